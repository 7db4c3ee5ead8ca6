"""Arch files are untrusted data: refuse anything in them that could run code.

AccelForge renders an arch file with a non-sandboxed Jinja2 environment (whose globals read
files and set environment variables), resolves `!include` / `!includedir` tags relative to
the file (any path, `..` and absolute ones included), and `eval`s string fields with
`__builtins__=None`, which `().__class__.__mro__[1].__subclasses__()` escapes. Its
`config.expression_custom_functions` / `config.component_models` even import Python files.
This module checks a file before AccelForge sees it:

* `check_arch_text` (the raw text, before AccelForge's loader):
  - Jinja2: only plain variable substitution `{{ name }}` is accepted (and `{# comments #}`);
    every `{% ... %}` block and every `{{ ... }}` with anything besides one name (calls such
    as `include(...)`, attribute access, filters, literals) is refused. We refuse rather
    than render with `jinja2.sandbox.SandboxedEnvironment` because AccelForge re-renders
    whatever we hand it with its own unsandboxed environment (a sandboxed render that
    outputs `{{` would be run again), and hwsim passes no template variables, so templating
    has no legitimate use in an hwsim arch file; refusing needs no copy of AccelForge's
    loader. A lone name can only be looked up, never called.
  - Includes: every `!include` / `!includedir` target (after symlinks) must lie inside the
    folder tree of the arch file; included files are checked the same way, recursively.
    `!include_loaded` (only meaningful after a Jinja `include()`) and glob characters in
    include paths are refused.
* `check_spec` (the parsed dict, what AccelForge will evaluate): every string key and
  value that parses as a Python expression must pass an `ast` whitelist (see `_violation`);
  strings that do not parse are inert (`eval` cannot run them either). The two config
  fields that name Python files are refused.

Violations raise ConfigError naming the file, the YAML path and the expression; nothing is
evaluated and nothing is written.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

from hwsim.models.errors import ConfigError

# Functions callable by plain name (a subset of AccelForge's MATH_FUNCS; its examples use
# ceil, len, log2, max, min, round).
ALLOWED_FUNCS = frozenset({"abs", "ceil", "exp", "floor", "len", "log", "log10", "log2",
                           "max", "min", "pow", "round", "sqrt"})
# AccelForge's constants and tensor-set names, and hwsim's einsum tensor / rank names.
KNOWN_NAMES = frozenset({
    "pi", "e", "tau", "inf", "nan",
    "All", "Tensors", "Nothing", "Inputs", "Outputs", "Intermediates", "Shared",
    "Persistent", "Other",
    "input", "output", "weight", "I", "O", "Wt", "g", "m", "c", "p", "q", "r", "s", "H", "W"})
# AccelForge's non-math callables: not even a bare name may bind them to a field.
DENIED_NAMES = frozenset({"getcwd", "map", "enumerate", "range", "str", "list", "tuple",
                          "float", "int", "bool", "sum"})
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd,
        ast.BitOr, ast.BitXor, ast.UAdd, ast.USub, ast.Not, ast.Invert, ast.And, ast.Or,
        ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
          ast.Call, ast.Name, ast.Constant, ast.Load) + _OPS
ALLOWED = ("allowed: numbers, + - * / // % ** & | ^ ~, comparisons, and/or/not, "
           "'a if c else b', names of this spec's fields, components and variables or "
           "AccelForge's tensor sets, and calls of " + ", ".join(sorted(ALLOWED_FUNCS)))
_CODE_FIELDS = ("expression_custom_functions", "component_models")
_KINDS = {ast.ListComp: "comprehension", ast.SetComp: "comprehension",
          ast.DictComp: "comprehension", ast.GeneratorExp: "generator expression",
          ast.NamedExpr: "assignment (:=)", ast.JoinedStr: "f-string"}


def _short(s, n: int = 120) -> str:
    s = str(s)
    return repr(s if len(s) <= n else s[:n] + "...")


# --------------------------------------------------------------------------- raw text

def _jinja_violation(text: str) -> tuple[int, str] | None:
    """(line, snippet) of the first Jinja2 construct other than `{{ name }}`, or None."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return None
    from jinja2 import Environment
    from jinja2.exceptions import TemplateSyntaxError

    inside = None  # (line, [tokens]) while within {{ ... }}
    try:
        for line, kind, value in Environment().lex(text):  # AccelForge uses the defaults
            if inside is None:
                if kind == "variable_begin":
                    inside = (line, [value])
                elif kind not in ("data", "comment_begin", "comment", "comment_end"):
                    return line, value  # {% block %}, {% raw %}, ...
                continue
            inside[1].append(value)
            if kind == "variable_end":
                body = [t for t in inside[1][1:-1] if t.strip()]
                if not (len(body) == 1 and body[0].isidentifier()
                        and not body[0].startswith("_")):
                    return inside[0], "".join(inside[1])
                inside = None
    except TemplateSyntaxError as e:
        if inside is None:
            return e.lineno or 1, f"unparsable template ({e.message})"
    return None if inside is None else (inside[0], "".join(inside[1]) + " (unterminated)")


def _compose(text: str, where: str):
    import yaml

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        what = " ".join(str(getattr(e, "problem", None) or type(e).__name__).split())
        raise ConfigError(f"{where}: malformed YAML: {what}{at}") from None


def _nodes(root):
    """(yaml path, node) for every node of a composed document, keys included."""
    seen, todo = set(), [("", root)]
    while todo:
        path, node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        yield path, node
        if isinstance(node.value, list):
            for i, item in enumerate(node.value):
                if isinstance(item, tuple):  # mapping: (key node, value node)
                    k = getattr(item[0], "value", "?")
                    sub = f"{path}.{k}" if path else str(k)
                    todo += [(f"{path} key {_short(k)}", item[0]), (sub, item[1])]
                else:
                    todo.append((f"{path}[{i}]", item))


def _inside(p: str, root: str) -> bool:
    return os.path.commonpath([p, root]) == root


def _check_include(node, path: str, file: Path, root: str, top: str, where: str,
                   stack: frozenset) -> None:
    import glob
    import yaml

    tag, target = node.tag, getattr(node, "value", None)
    bad = None
    if tag == "!include_loaded":
        bad = "!include_loaded is not supported"
    elif not isinstance(node, yaml.ScalarNode) or not str(target).strip(", "):
        bad = "the include path must be a plain string"
    elif any(c in target for c in "*?[{"):
        bad = "glob and template characters are not allowed in include paths"
    if bad is None:
        target = target[:-1] if target.endswith(",") else target  # as AccelForge does
        full = os.path.realpath(os.path.join(file.parent, target))
        if not _inside(full, root):
            bad = f"it resolves outside the arch file's folder {root}"
        elif not (os.path.isfile(full) if tag == "!include" else os.path.isdir(full)):
            bad = "no such " + ("file" if tag == "!include" else "folder")
    if bad:
        raise ConfigError(f"{where}: field {path}: {tag} {_short(target)} refused: {bad} "
                          "(includes must stay inside the arch file's folder tree)")
    files = [full] if tag == "!include" else sorted(glob.glob(full + "/*.yaml"))
    for f in map(os.path.realpath, files):
        if not _inside(f, root):
            raise ConfigError(f"{where}: field {path}: {tag} {_short(target)} refused: "
                              f"{f} resolves outside the arch file's folder {root}")
        if f in stack:
            raise ConfigError(f"{where}: field {path}: {tag} {_short(target)} includes "
                              "itself")
        rel = os.path.relpath(f, root)
        _check_file(Path(f), Path(f).read_text(errors="replace"), root, top,
                    f"{top}, included file {rel!r}", stack | {f})


def _check_file(file: Path, text: str, root: str, top: str, where: str,
                stack: frozenset) -> None:
    bad_jinja = _jinja_violation(text)
    try:
        doc = _compose(text, where)
    except ConfigError:
        if bad_jinja is None:
            raise
        doc = None
    nodes = list(_nodes(doc))
    if bad_jinja:
        line, snippet = bad_jinja
        span = [(n.end_mark.line - n.start_mark.line, p) for p, n in nodes
                if " key " not in p and n.start_mark.line <= line - 1 <= n.end_mark.line]
        at = f"field {min(span)[1]}" if span and min(span)[1] else f"line {line}"
        raise ConfigError(f"{where}: {at}: Jinja2 template {_short(snippet)} refused: only "
                          "plain variable substitution {{ name }} is allowed (arch files "
                          "are untrusted data)")
    for path, node in nodes:
        if node.tag in ("!include", "!includedir", "!include_loaded"):
            _check_include(node, path or "(top level)", file, root, top, where, stack)


def check_arch_text(arch_file, text: str) -> None:
    """Refuse Jinja2 beyond `{{ name }}` and includes that leave the arch file's folder
    tree, in `text` (the content of `arch_file`) and, recursively, in included files."""
    real, where = os.path.realpath(arch_file), f"arch file {str(arch_file)!r}"
    _check_file(Path(real), text, os.path.dirname(real), where, where, frozenset({real}))


# --------------------------------------------------------------------------- expressions

def _walk(tree):
    """Pre-order walk (a call's function before its arguments), without recursion."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo += reversed(list(ast.iter_child_nodes(node)))


def _violation(text: str, names: frozenset) -> str | None:
    """Why `text` is not an allowed expression, or None when it is (or cannot run)."""
    try:  # eval() strips leading blanks and compiles in "eval" mode, as here
        tree = compile(text.lstrip(" \t"), "<arch>", "eval", ast.PyCF_ONLY_AST,
                       dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # not an expression: eval() cannot run it either
    if isinstance(tree.body, ast.Name):  # a bare name: component class, tensor, ...
        n = tree.body.id
        return (f"name {n!r} is not allowed" if n.startswith("__") or n in DENIED_NAMES
                else None)
    callees = {id(c.func) for c in ast.walk(tree) if isinstance(c, ast.Call)}
    for node in _walk(tree):
        if isinstance(node, ast.Name):
            n = node.id
            if n.startswith("__") or n in DENIED_NAMES:
                return f"name {n!r} is not allowed"
            if id(node) in callees:
                if n not in ALLOWED_FUNCS:
                    return f"call of {n!r}"
            elif n not in names and n not in KNOWN_NAMES:
                return f"unknown name {n!r}"
        elif isinstance(node, ast.Call):
            if node.keywords:
                return "keyword argument"
            if not isinstance(node.func, ast.Name):
                continue  # reported below (attribute access, subscript, ...)
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, complex, type(None))):
                return f"{type(node.value).__name__} literal"
        elif isinstance(node, ast.Attribute):
            return f"attribute access '.{node.attr}'"
        elif not isinstance(node, _NODES):
            return _KINDS.get(type(node), type(node).__name__.lower())
    return None


def _items(spec: dict):
    """(yaml path, string, is_key) for every string key and value; `hwsim:` is skipped
    (hwsim reads it itself, AccelForge never sees it)."""
    seen, todo = set(), [("", spec)]
    while todo:
        path, obj = todo.pop()
        if isinstance(obj, str):
            yield path, obj, False
        if not isinstance(obj, (dict, list, tuple)) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(k, str):
                    yield path, k, True
                if not (path == "" and k == "hwsim"):
                    todo.append((f"{path}.{k}" if path else str(k), v))
        else:
            todo += [(f"{path}[{i}]", v) for i, v in enumerate(obj)]


def check_spec(arch_file, spec: dict) -> None:
    """Every expression AccelForge would evaluate in `spec` (the parsed arch file) passes
    the whitelist (ALLOWED); config fields that load Python files are refused."""
    where = f"arch file {str(arch_file)!r}"
    cfg = spec.get("config")
    for f in _CODE_FIELDS if isinstance(cfg, dict) else ():
        if cfg.get(f):
            raise ConfigError(f"{where}: field config.{f} refused: it names Python files "
                              "that AccelForge would import (arch files are untrusted data); "
                              "use installed hwcomponents models instead")
    items = list(_items(spec))
    names = frozenset(s for _, s, key in items if key and s.isidentifier()) | frozenset(
        s for p, s, key in items if not key and p.endswith(".name") and s.isidentifier())
    for path, s, is_key in items:
        why = _violation(s, names)
        if why:
            what = f"key {_short(s)}" if is_key else f"expression {_short(s)}"
            raise ConfigError(f"{where}: field {path or '(top level)'}: {what} refused "
                              f"({why}); {ALLOWED}")


_ARITH = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
          ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
          ast.FloorDiv: lambda a, b: a // b, ast.Pow: lambda a, b: a ** b}


def plain_number(value) -> float | None:
    """`value` (a number, or a string of plain arithmetic: numbers, `inf`, + - * / // **,
    unary minus) as a float; None when it is anything else (e.g. needs AccelForge's own
    evaluator). Evaluated in floating point, so `9**9**9` overflows at once instead of
    building a huge integer."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)

    def ev(n):
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)) \
                and not isinstance(n.value, bool):
            return float(n.value)
        if isinstance(n, ast.Name) and n.id == "inf":
            return float("inf")
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp) and type(n.op) in _ARITH:
            return _ARITH[type(n.op)](ev(n.left), ev(n.right))
        raise ValueError
    try:
        return ev(ast.parse(str(value).strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ArithmeticError, RecursionError):
        return None
