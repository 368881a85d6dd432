"""The suite's own bookkeeping: every test module is classified for the kernel-path runs of `make test-isa`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import NO_NUMERICS, NUMERICS

HERE = Path(__file__).resolve().parent


def test_every_test_module_is_classified_once() -> None:
    modules = {p.stem for p in HERE.glob("test_*.py")}
    assert not NUMERICS & NO_NUMERICS
    assert modules - NUMERICS - NO_NUMERICS == set(), "classify these in tests/conftest.py"
    assert (NUMERICS | NO_NUMERICS) - modules == set(), "these modules no longer exist"


def test_the_numerics_marker_selects_exactly_the_numerics_modules() -> None:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "numerics", str(HERE)],
                         capture_output=True, text=True, timeout=300, cwd=HERE.parent)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    files = {line.split("::")[0] for line in out.stdout.splitlines() if "::" in line}
    assert {Path(f).stem for f in files} == NUMERICS
