"""AST rules for the vulnerabilities bandit misses in model-written web and file code.

Each rule follows request data (Flask/Django `request.*`, route parameters, uploaded file names) through
the assignments of one function to a sink: an HTML response, a template, a SQL call, a file path, a
redirect. A call to a sanitizer (`escape`, `bleach.clean`, `secure_filename`, `int`, ...) ends the taint.
A few rules need no taint: jinja2 autoescape off, world-writable modes, unfiltered `tarfile.extractall`,
substring/regex host checks, and passwords compared with a literal.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One of aftertune's own checks."""

    rule_id: str
    name: str
    cwe: int
    #: one line: what is wrong and why it is exploitable
    message: str


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired, and where (1-based line)."""

    rule: Rule
    line: int


# The messages say what is wrong and how it is exploited, in one line each.
XSS = Rule("AT001", "xss_unescaped_response", 79, "request data in a response without escaping: XSS")
SSTI = Rule("AT002", "template_from_user_input", 1336, "a template built from request data: injection")
AUTOESCAPE = Rule("AT003", "jinja2_autoescape_off", 79, "jinja2 Template with autoescape off: raw HTML, XSS")
MARKUP = Rule("AT004", "markup_of_user_input", 79, "request data marked safe (Markup): raw HTML, XSS")
SQL = Rule("AT005", "sql_built_from_strings", 89, "SQL built by string formatting, executed: injection")
PATH = Rule("AT006", "path_traversal", 22, "a request-controlled path opens files: ../ escapes")
REDIRECT = Rule("AT007", "open_redirect", 601, "redirect to a request-given URL, host unchecked")
WORLD_WRITABLE = Rule(
    "AT008", "world_writable_mode", 732, "file mode writable by all users: others can replace it"
)
TAR = Rule(
    "AT009", "tarfile_extract_unfiltered", 22, "tarfile extractall without filter=: ../ members escape"
)
HOST_CHECK = Rule(
    "AT010", "incomplete_host_check", 20, "host checked by substring/loose regex: evil hosts pass"
)
PASSWORD_LITERAL = Rule(
    "AT011", "password_compared_to_literal", 798, "password compared with a literal: backdoor"
)

RULES: tuple[Rule, ...] = (
    *(XSS, SSTI, AUTOESCAPE, MARKUP, SQL, PATH, REDIRECT),
    *(WORLD_WRITABLE, TAR, HOST_CHECK, PASSWORD_LITERAL),
)

# Attributes of Flask's / Django's `request` that carry what the client sent.
# fmt: off
_REQUEST_DATA = frozenset({
    "args", "form", "values", "json", "get_json", "files", "cookies", "headers", "data", "get_data",
    "view_args", "url", "full_path", "path", "referrer", "stream", "GET", "POST", "FILES", "COOKIES",
    "META", "body", "query_params", "query_string",
})
# fmt: on
# Calls whose result no longer carries the attacker's raw text (escaping, parsing to numbers, file-name
# cleaning, serialising to JSON, rendering a file template, which autoescapes).
# fmt: off
_SANITIZERS = frozenset({
    "escape", "clean", "linkify", "secure_filename", "basename", "int", "float", "bool", "len", "quote",
    "quote_plus", "url_for", "jsonify", "render_template", "render", "safe_join", "abs", "round", "hash",
    "urlencode", "sha256", "md5", "uuid4", "get_object_or_404",
})
# fmt: on
_SQL_TEXT = re.compile(
    r"\b(select\s.+\sfrom|insert\s+into|update\s+\w+\s+set|delete\s+from|replace\s+into"
    r"|where\s+\w+\s*(=|like|in))\b",
    re.IGNORECASE | re.DOTALL,
)
_SQL_CALLS = frozenset(
    {"execute", "executemany", "executescript", "raw", "read_sql", "read_sql_query", "text"}
)
# fmt: off
_FILE_CALLS = frozenset({
    "open", "send_file", "remove", "unlink", "rmdir", "rename", "replace", "copy", "copyfile", "copy2",
    "copytree", "move", "rmtree", "makedirs", "mkdir", "save", "listdir", "read_text", "read_bytes",
    "write_text", "write_bytes", "FileResponse",
})
# fmt: on
_RESPONSES = frozenset({"make_response", "Response", "HttpResponse"})
_REDIRECTS = frozenset({"redirect", "HttpResponseRedirect"})
_MODE_CALLS = frozenset({"chmod", "fchmod", "lchmod", "open", "mkdir", "makedirs", "mkfifo", "touch"})
# A literal that is a host name: "example.com", "www.example.co.uk", ".example.com".
_HOST = re.compile(r"^\.?([a-z0-9-]+\.)+[a-z]{2,}/?$")
# A regex naming a host with an unescaped dot before its top-level domain ("alerts.example.com").
_LOOSE_HOST_REGEX = re.compile(r"(?<!\\)\.(com|org|net|io|edu|gov|co|uk|de|dev|app)\b")
_PASSWORD_NAME = re.compile(r"pass(word|wd)?$|^pwd$|_pwd$", re.IGNORECASE)


def check(tree: ast.Module) -> list[RuleHit]:
    """Every rule's hits in a parsed module, in line order, one per (rule, line)."""
    constants = _module_constants(tree)
    hits: list[RuleHit] = []
    for scope in _scopes(tree):
        hits += _Scope(scope, constants).hits()
    hits += _autoescape_off(tree) + _world_writable(tree) + _tar_unfiltered(tree)
    hits += _host_checks(tree) + _password_literals(tree)
    unique = {(h.line, h.rule.rule_id): h for h in hits}
    return [unique[key] for key in sorted(unique)]


# ---------------------------------------------------------------------- request data through a function
def _scopes(tree: ast.Module) -> Iterator[ast.Module | ast.FunctionDef | ast.AsyncFunctionDef]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of a scope without those of nested functions, in source order."""
    out: list[ast.AST] = []
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return sorted(out, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


class _Scope:
    """Taint of one function (or the module body): which names hold request data, strings, or SQL."""

    def __init__(self, scope: ast.AST, constants: dict[str, object]) -> None:
        self.scope = scope
        self.constants = constants
        self.nodes = _own_nodes(scope)
        self.is_view = _is_view(scope)
        self.tainted: set[str] = set(_user_params(scope)) if self.is_view else set()
        self.strings: set[str] = set()  # names bound to text built from request data
        self.sql: set[str] = set()  # names bound to SQL text built by formatting
        self.sql_text: set[str] = set()  # names bound to any text that reads as SQL
        self.calls = {_call_name(n) for n in self.nodes if isinstance(n, ast.Call)}
        # two passes reach a fixed point for assignments inside loops that feed earlier lines
        for _ in range(2):
            self._propagate()

    def _propagate(self) -> None:
        for node in self.nodes:
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                augmented = isinstance(node, ast.AugAssign)
                if self.is_tainted(node.value):
                    self.tainted.update(names)
                    if self.is_text(node.value):
                        self.strings.update(names)
                if _has_sql_text(node.value):
                    self.sql_text.update(names)
                # query = "SELECT ... WHERE "; query += f"name = '{name}'": the SQL is in the first part
                extends_sql = augmented and bool(set(names) & (self.sql_text | self.sql))
                derived = any(isinstance(n, ast.Name) and n.id in self.sql for n in ast.walk(node.value))
                if self.is_sql(node.value) or derived or (extends_sql and self._formats_variable(node.value)):
                    self.sql.update(names)
                elif not augmented:
                    self.sql.difference_update(names)
            elif isinstance(node, ast.For | ast.comprehension) and self.is_tainted(node.iter):
                self.tainted.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
            elif isinstance(node, ast.withitem) and node.optional_vars and self.is_tainted(node.context_expr):
                self.tainted.update(n.id for n in ast.walk(node.optional_vars) if isinstance(n, ast.Name))

    def is_tainted(self, expr: ast.AST) -> bool:
        if isinstance(expr, ast.Call) and _call_name(expr) in _SANITIZERS:
            return False
        if isinstance(expr, ast.Call) and any(w in _call_name(expr).lower() for w in ("escape", "saniti")):
            return False
        if _is_request_data(expr) or (isinstance(expr, ast.Name) and expr.id in self.tainted):
            return True
        return any(self.is_tainted(child) for child in ast.iter_child_nodes(expr))

    def is_text(self, expr: ast.AST) -> bool:
        """Text built from request data: formatting, concatenation, or a scalar read from the request."""
        if isinstance(expr, ast.Name):
            return expr.id in self.strings
        if isinstance(expr, ast.JoinedStr | ast.BinOp):
            return self.is_tainted(expr)
        if isinstance(expr, ast.IfExp):
            return self.is_text(expr.body) or self.is_text(expr.orelse)
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
            if expr.func.attr in ("format", "join", "replace", "strip", "upper", "lower", "title"):
                return self.is_tainted(expr)
            if expr.func.attr in ("get", "getlist"):
                return _is_request_data(expr.func.value) or self.is_text(expr.func.value)
        if isinstance(expr, ast.Subscript):
            return _is_request_data(expr.value) or (
                isinstance(expr.value, ast.Name) and expr.value.id in self.tainted
            )
        return False

    def is_sql(self, expr: ast.AST) -> bool:
        """SQL text with a non-constant value formatted or concatenated into it."""
        if isinstance(expr, ast.Name):
            return expr.id in self.sql
        return _has_sql_text(expr) and self._formats_variable(expr)

    def _formats_variable(self, expr: ast.AST) -> bool:
        if isinstance(expr, ast.JoinedStr):
            values = [v.value for v in expr.values if isinstance(v, ast.FormattedValue)]
        elif isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod | ast.Add):
            values = [expr.right] if isinstance(expr.op, ast.Mod) else [expr.left, expr.right]
        elif (
            isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.attr == "format"
        ):
            values = list(expr.args) + [k.value for k in expr.keywords]
        else:
            return False
        return any(self._variable(v) for v in values)

    def _variable(self, value: ast.AST) -> bool:
        """A value that may be attacker-influenced: not a literal, a module constant or placeholder text."""
        if isinstance(value, ast.Constant) or (isinstance(value, ast.Name) and value.id in self.constants):
            return False
        if isinstance(value, ast.Tuple | ast.List):
            return any(self._variable(v) for v in value.elts)
        if isinstance(value, ast.JoinedStr | ast.BinOp | ast.Call) and self._formats_variable(value):
            return True
        if isinstance(value, ast.JoinedStr) or (isinstance(value, ast.BinOp) and _has_sql_text(value)):
            return False  # "WHERE " + "id = ?": text put together from literals only
        text = ast.unparse(value)
        # "IN ({placeholders})" with placeholders = ", ".join("?" * n) is the safe way to bind a list
        return "placeholder" not in text.lower() and not re.fullmatch(r"['\"][^'\"]*['\"]\.join\(.*", text)

    def hits(self) -> list[RuleHit]:
        out: list[RuleHit] = []
        guarded_path = bool(self.calls & {"realpath", "abspath", "normpath", "resolve"}) and any(
            isinstance(n, ast.Attribute) and n.attr in ("startswith", "is_relative_to") for n in self.nodes
        )
        checks_host = bool(
            self.calls & {"urlparse", "urlsplit", "url_has_allowed_host_and_scheme", "is_safe_url"}
        )
        for node in self.nodes:
            if self.is_view and isinstance(node, ast.Return) and node.value is not None:
                # `return html` or `return html, 200`: Flask sends text as text/html
                body = (
                    node.value.elts[0]
                    if isinstance(node.value, ast.Tuple) and node.value.elts
                    else node.value
                )
                if self.is_text(body):
                    out.append(RuleHit(XSS, node.lineno))
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            first = node.args[0] if node.args else None
            args = list(node.args) + [k.value for k in node.keywords]
            if name in _RESPONSES and first is not None and self.is_tainted(first):
                out.append(RuleHit(XSS, node.lineno))
            elif name in ("render_template_string", "from_string", "Template") and first is not None:
                if self.is_tainted(first):
                    out.append(RuleHit(SSTI, node.lineno))
            elif name in ("Markup", "mark_safe") and first is not None and self.is_tainted(first):
                out.append(RuleHit(MARKUP, node.lineno))
            elif name in _SQL_CALLS and first is not None and self.is_sql(first):
                out.append(RuleHit(SQL, node.lineno))
            elif name in _REDIRECTS and first is not None and self.is_tainted(first) and not checks_host:
                out.append(RuleHit(REDIRECT, node.lineno))
            elif name in _FILE_CALLS and not guarded_path and self._path_tainted(node, args):
                out.append(RuleHit(PATH, node.lineno))
        return out

    def _path_tainted(self, node: ast.Call, args: list[ast.expr]) -> bool:
        name = _call_name(node)
        if name in ("read_text", "read_bytes", "write_text", "write_bytes", "unlink", "rmdir"):
            # Path methods: the path is the object the method is called on
            return isinstance(node.func, ast.Attribute) and self.is_tainted(node.func.value)
        if name == "save" and isinstance(node.func, ast.Attribute):
            # upload.save(os.path.join(folder, upload.filename)): the file object itself is request data
            return bool(node.args) and self.is_tainted(node.args[0])
        if name == "open" and isinstance(node.func, ast.Attribute):
            if not node.args:
                return self.is_tainted(node.func.value)  # Path(user).open()
            owner = node.func.value
            if not (isinstance(owner, ast.Name) and owner.id in ("io", "os", "codecs")):
                return False  # Image.open(BytesIO(upload)), tarfile.open, ...: not a path on this disk
        return any(self.is_tainted(a) for a in args[:2])


def _has_sql_text(expr: ast.AST) -> bool:
    literal = " ".join(
        n.value for n in ast.walk(expr) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    )
    return bool(_SQL_TEXT.search(literal))


def _is_request_data(expr: ast.AST) -> bool:
    """`request.args`, `request.form[...]`, `request.get_json()`, `self.request.GET`."""
    node = expr
    while isinstance(node, ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    if not isinstance(node, ast.Attribute) or node.attr not in _REQUEST_DATA:
        return False
    base = node.value
    return (isinstance(base, ast.Name) and base.id in ("request", "req")) or (
        isinstance(base, ast.Attribute) and base.attr == "request"
    )


def _is_view(scope: ast.AST) -> bool:
    """A Flask/FastAPI route (a decorator like `@app.route`) or a Django view (first parameter `request`)."""
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for decorator in scope.decorator_list:
        call = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(call, ast.Attribute) and call.attr in (
            "route",
            "get",
            "post",
            "put",
            "delete",
            "patch",
        ):
            return True
    params = scope.args.posonlyargs + scope.args.args
    return bool(params) and params[0].arg == "request"


def _user_params(scope: ast.AST) -> list[str]:
    """Route parameters that arrive as free text (`<name>`, not `<int:name>`)."""
    if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
        return []
    typed: set[str] = set()
    for decorator in scope.decorator_list:
        if isinstance(decorator, ast.Call):
            for arg in decorator.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    typed |= set(re.findall(r"<(?:int|float|uuid):(\w+)>", arg.value))
    params = [a.arg for a in scope.args.posonlyargs + scope.args.args if a.arg not in ("self", "request")]
    return [p for p in params if p not in typed]


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Module-level names bound once to a literal (TABLE = "users", MODE = 0o777)."""
    values: dict[str, object] = {}
    seen: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if isinstance(node.value, ast.Constant) and name not in seen:
                values[name] = node.value.value
            else:
                values.pop(name, None)
            seen.add(name)
    return values


def _int_bindings(tree: ast.Module) -> dict[str, set[int]]:
    """Every int literal each name is bound to anywhere: `mode = 0o777`, `def f(perms=0o777)`."""
    out: dict[str, set[int]] = {}
    for node in ast.walk(tree):
        pairs: list[tuple[ast.AST, ast.AST | None]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign):
            pairs = [(node.target, node.value)]
        elif isinstance(node, ast.arguments):
            positional = node.posonlyargs + node.args
            pairs = list(zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True))
            pairs += [(a, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        for target, value in pairs:
            name = (
                target.id
                if isinstance(target, ast.Name)
                else target.arg
                if isinstance(target, ast.arg)
                else None
            )
            if name and isinstance(value, ast.Constant) and type(value.value) is int:
                out.setdefault(name, set()).add(value.value)
    return out


# ---------------------------------------------------------------------- rules that need no taint
def _autoescape_off(tree: ast.Module) -> list[RuleHit]:
    """`Template(..., autoescape=False)`, a Template of HTML with no autoescape, `x.autoescape = False`.

    Bandit's B701 covers `Environment(...)` only; `jinja2.Template` defaults to autoescape off.
    """
    if not _imports(tree, "jinja2"):
        return []
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "Template":
            autoescape = next((k.value for k in node.keywords if k.arg == "autoescape"), None)
            html = bool(node.args) and any(
                isinstance(n, ast.Constant) and isinstance(n.value, str) and re.search(r"<\w|&lt;", n.value)
                for n in ast.walk(node.args[0])
            )
            if (isinstance(autoescape, ast.Constant) and not autoescape.value) or (
                autoescape is None and html
            ):
                hits.append(RuleHit(AUTOESCAPE, node.lineno))
        elif isinstance(node, ast.Assign) and _sets_autoescape_false(node):
            hits.append(RuleHit(AUTOESCAPE, node.lineno))
    return hits


def _sets_autoescape_false(node: ast.Assign) -> bool:
    false = isinstance(node.value, ast.Constant) and node.value.value is False
    return false and any(isinstance(t, ast.Attribute) and t.attr == "autoescape" for t in node.targets)


def _world_writable(tree: ast.Module) -> list[RuleHit]:
    """A mode with the others-write bit (0o002) given to chmod/open/mkdir, directly or through a name.

    Bandit's B103 checks `os.chmod` with a literal mode only.
    """
    bindings = _int_bindings(tree)
    hits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _call_name(node) not in _MODE_CALLS:
            continue
        name = _call_name(node)
        method = isinstance(node.func, ast.Attribute)
        owner = node.func.value if isinstance(node.func, ast.Attribute) else None
        if name == "open" and not (isinstance(owner, ast.Name) and owner.id == "os"):
            continue  # only os.open takes a mode as its third argument
        candidates = [k.value for k in node.keywords if k.arg == "mode"]
        candidates += (
            node.args[1:2] if name in ("chmod", "fchmod", "lchmod", "mkdir", "makedirs", "mkfifo") else []
        )
        candidates += node.args[2:3] if name == "open" else []
        candidates += (
            node.args[:1] if name in ("chmod", "touch", "mkdir") and method else []
        )  # Path(p).chmod(m)
        modes = set()
        for mode in candidates:
            if isinstance(mode, ast.Constant) and type(mode.value) is int:
                modes.add(mode.value)
            elif isinstance(mode, ast.Name):
                modes |= bindings.get(mode.id, set())
        if any(m & 0o002 and m <= 0o7777 for m in modes):
            hits.append(RuleHit(WORLD_WRITABLE, node.lineno))
    return hits


def _tar_unfiltered(tree: ast.Module) -> list[RuleHit]:
    """`extractall` with no `filter=` and members left unchosen (absent or `getmembers()`).

    Bandit's B202 stays below MEDIUM when `members=` is given, even `tar.getmembers()`, which checks nothing.
    """
    if not _imports(tree, "tarfile"):
        return []
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) == "extractall":
            keywords = {k.arg: k.value for k in node.keywords}
            members = keywords.get("members")
            unchosen = members is None or (
                isinstance(members, ast.Call) and _call_name(members) == "getmembers"
            )
            if "filter" not in keywords and unchosen:
                hits.append(RuleHit(TAR, node.lineno))
    return hits


def _host_checks(tree: ast.Module) -> list[RuleHit]:
    """`"example.com" in url` (passes for evil.com/example.com) or `re.match("a.example.com", host)`."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            left = node.left
            if isinstance(left, ast.Constant) and isinstance(left.value, str) and _HOST.match(left.value):
                hits.append(RuleHit(HOST_CHECK, node.lineno))
        elif isinstance(node, ast.Call) and _call_name(node) in ("compile", "match", "search", "fullmatch"):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "re":
                pattern = node.args[0] if node.args else None
                text = pattern.value if isinstance(pattern, ast.Constant) else None
                if isinstance(text, str) and _LOOSE_HOST_REGEX.search(text):
                    hits.append(RuleHit(HOST_CHECK, node.lineno))
    return hits


def _password_literals(tree: ast.Module) -> list[RuleHit]:
    """`password == "hunter2"`: a hard-coded credential (bandit's B105 rates it LOW severity)."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.Eq | ast.NotEq):
            sides = [node.left, *node.comparators]
            named = any(_PASSWORD_NAME.search(_name_of(s)) for s in sides)
            literal = any(isinstance(s, ast.Constant) and isinstance(s.value, str) and s.value for s in sides)
            if named and literal:
                hits.append(RuleHit(PASSWORD_LITERAL, node.lineno))
    return hits


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return ""


def _imports(tree: ast.Module, module: str) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module:
            return True
    return False
