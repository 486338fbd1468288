"""A task module's ``@task(...)`` declarations read from its source with :mod:`ast`, never run: the ids and
options intake needs when the tasks run in other processes (``gateway serve --executor off``).
I/O: finds modules on the path and reads their files; imports and executes nothing.
"""

from __future__ import annotations

import ast
import copy
import pkgutil
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Any, NoReturn

from gateway.errors import TaskError

# What a decorator must resolve to, through the module's imports, to be the gateway's `@task`.
DECORATORS = frozenset({"gateway.task", "gateway.execution.tasks.task"})
FIX = (
    "intake (gateway serve --executor off) reads task options from the source without running it: "
    "write {arg} as a literal, or a module-level NAME = literal; or run intake with the embedded executor"
)
SHAPE_FIX = (
    "intake (gateway serve --executor off) reads each @task(id=...) as the outermost decorator of a "
    "top-level def or async def, from the source without running it: write it so; "
    "or run intake with the embedded executor"
)
# `@task(id="charge")` or `@gateway.task(..., id='charge')`: the ids in a text that does not even parse.
_DECLARED = re.compile(
    r"@\s*(?:\w+\s*\.\s*)*task\s*\((?:[^()]|\([^()]*\))*?\bid\s*=\s*(['\"])([^'\"\\\n]+)\1"
)
_OWN_SCOPE = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)  # their names are theirs


@dataclass(frozen=True, slots=True)
class Source:
    """A module found without importing it: its dotted name and its file."""

    name: str
    file: Path


@dataclass(frozen=True, slots=True)
class Declaration:
    """One ``@task(...)`` over a top-level def: the def's name, the decorator's line, its keywords' values."""

    function: str
    line: int
    is_async: bool
    kwargs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Declared:
    """What one module's source declares, or the problems that stop intake reading it (each naming file:line
    and the fix), and the task ids its text names (so a route naming one is told why it is unknown)."""

    source: Source
    declarations: tuple[Declaration, ...] = ()
    problems: tuple[str, ...] = ()
    task_ids: frozenset[str] = frozenset()


def ids_in_text(text: str) -> frozenset[str]:
    return frozenset(m.group(2) for m in _DECLARED.finditer(text))


def syntax_location(exc: SyntaxError) -> str:
    """`` (file:line:column): text`` of a SyntaxError: its own file (its traceback is importlib's)."""
    column = f":{exc.offset}" if exc.offset else ""
    text = (exc.text or "").strip()
    return f" ({exc.filename}:{exc.lineno}{column})" + (f": {text}" if text else "")


def find(name: str, path: Sequence[str]) -> list[Source]:
    """Module ``name`` and, for a package, each of its submodules (in the order ``pkgutil.walk_packages``
    imports them), located on ``path`` without importing any: ``importlib.util.find_spec('a.b')`` would run
    package ``a``. Raises ModuleNotFoundError as an import would."""
    search: list[str] | None = list(path)
    spec, prefix = None, ""
    for part in name.split("."):
        if search is None or not part.isidentifier():
            tail = f"; {prefix[:-1]!r} is not a package" if search is None else ""
            raise ModuleNotFoundError(f"No module named {name!r}{tail}", name=name)
        spec = PathFinder.find_spec(prefix + part, search)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {prefix + part!r}", name=name)
        search, prefix = _locations(spec), f"{prefix}{part}."
    assert spec is not None
    found = [Source(name, Path(spec.origin))] if spec.has_location and spec.origin else []
    return found + list(_submodules(name, search or []))


def _locations(spec: ModuleSpec) -> list[str] | None:
    return None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)


def _submodules(package: str, paths: list[str]) -> Iterator[Source]:
    for info in pkgutil.iter_modules(paths, package + "."):  # lists the folders, imports nothing
        spec = PathFinder.find_spec(info.name, paths)
        if spec is None or not spec.origin:
            continue
        yield Source(info.name, Path(spec.origin))
        if info.ispkg:
            yield from _submodules(info.name, _locations(spec) or [])


def read(source: Source) -> Declared:
    """Parse one module's file and read its declarations; a file that cannot be read or parsed: a problem."""
    failed = f"reading {source.name!r} failed"
    if source.file.suffix != ".py":
        why = f"{failed}: {source.file} is not Python source; run intake with the embedded executor"
        return Declared(source, problems=(why,))
    try:
        data = source.file.read_bytes()
        tree = ast.parse(data, filename=str(source.file))
    except SyntaxError as exc:
        ids = ids_in_text(data.decode("utf-8", "replace"))
        why = f"{failed}: SyntaxError: {exc.msg}{syntax_location(exc)}"
        return Declared(source, problems=(why,), task_ids=ids)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the source (Python 3.11)
        return Declared(source, problems=(f"{failed}: {type(exc).__name__}: {exc} ({source.file})",))
    declarations, problems = declarations_in(tree, source.file)
    named = frozenset(d.kwargs["id"] for d in declarations if isinstance(d.kwargs.get("id"), str))
    ids = named | ids_in_text(data.decode("utf-8", "replace"))  # and those of the @task refused here
    return Declared(source, tuple(declarations), tuple(problems), ids)


def declarations_in(tree: ast.Module, file: Path) -> tuple[list[Declaration], list[str]]:
    """The ``@task(...)`` declarations over the top-level defs of ``tree``, and a problem for each argument
    that is not a literal and each ``task(...)`` intake cannot see, as an import would have run it. Pure."""
    imported = _imported(tree)
    names = _Names(tree)
    declarations: list[Declaration] = []
    problems: list[str] = []
    seen: set[int] = set()
    for stmt in tree.body:
        if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for k, deco in enumerate(stmt.decorator_list):
            call = deco if isinstance(deco, ast.Call) else None
            if _qualname(call.func if call else deco, imported) not in DECORATORS:
                continue
            seen.add(id(deco))
            at = f"{file}:{deco.lineno}: @task over {stmt.name}()"
            if call is None or k:
                why = "has no arguments" if call is None else "is under another decorator"
                problems.append(f"{at} {why}; {SHAPE_FIX}")
                continue
            kwargs, wrong = _arguments(call, names, f"{file}:{{line}}: @task over {stmt.name}()")
            problems += wrong
            if not wrong:
                is_async = isinstance(stmt, ast.AsyncFunctionDef)
                declarations.append(Declaration(stmt.name, deco.lineno, is_async, kwargs))
    for node in _scope(tree):  # `x = task(id=...)(f)`, or a def under `if`: an import runs it, this does not
        if (
            isinstance(node, ast.Call)
            and id(node) not in seen
            and _qualname(node.func, imported) in DECORATORS
        ):
            problems.append(f"{file}:{node.lineno}: task(...) not over a top-level def; {SHAPE_FIX}")
    return declarations, problems


def _arguments(call: ast.Call, names: _Names, at: str) -> tuple[dict[str, Any], list[str]]:
    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    if call.args:
        line = call.args[0].lineno
        problems.append(
            f"{at.format(line=line)}: positional arguments; write each as name=literal (id='...')"
        )
    for kw in call.keywords:
        if kw.arg is None:
            problems.append(
                f"{at.format(line=kw.lineno)}: `**` arguments; write each option as name=literal "
                "(retry={...}): intake reads them from the source without running it"
            )
            continue
        try:
            kwargs[kw.arg] = names.value(kw.value)
        except _NotLiteral as exc:
            arg = f"`{kw.arg}=`"
            problems.append(f"{at.format(line=exc.line)}: {arg} is {exc.reason}; {FIX.format(arg=arg)}")
    return kwargs, problems


class _NotLiteral(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line, self.reason = line, reason


class _Names:
    """Evaluates an argument with ``ast.literal_eval``, each bare name in it (the whole argument, an item or a
    key or value of a dict) replaced by the literal the module binds it to: once, at top level, as
    ``NAME = <literal>`` or ``NAME: T = <literal>``, above the use."""

    def __init__(self, tree: ast.Module) -> None:
        self.bindings = _bindings(tree)
        self.assigned: dict[int, ast.expr] = {}  # id(the Name a top-level assignment stores) → its value
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                self.assigned.update((id(t), stmt.value) for t in stmt.targets if isinstance(t, ast.Name))
            elif isinstance(stmt, ast.AnnAssign) and stmt.value and isinstance(stmt.target, ast.Name):
                self.assigned[id(stmt.target)] = stmt.value

    def value(self, node: ast.expr) -> Any:
        expr = self._substituted(copy.deepcopy(node), node.lineno)
        try:
            return ast.literal_eval(expr)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise _NotLiteral(*_why(expr)) from None

    def _substituted(self, node: ast.expr, line: int) -> ast.expr:
        if isinstance(node, ast.Name):
            return self._literal_of(node, line)
        if isinstance(node, ast.Dict):
            node.values = [
                v if k is None else self._substituted(v, line)
                for k, v in zip(node.keys, node.values, strict=True)
            ]  # `{**BASE}` stays an unpacking, refused as one
            node.keys = [None if k is None else self._substituted(k, line) for k in node.keys]
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            node.elts = [self._substituted(e, line) for e in node.elts]
        return node

    def _literal_of(self, name: ast.Name, line: int) -> ast.expr:
        where = self.bindings.get(name.id, [])
        value = self.assigned.get(id(where[0])) if len(where) == 1 else None
        if len(where) > 1:
            reason = (
                f"assigned {len(where)} times at module level: which value it holds depends on running it"
            )
        elif value is None or not _literal(value):
            reason = "not assigned a literal at module level" if where else "not assigned at module level"
        elif value.lineno >= line:
            reason = f"assigned at line {value.lineno}, below the @task that uses it"
        else:
            return copy.deepcopy(value)
        raise _NotLiteral(name.lineno, f"the name {name.id} ({reason})")


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _why(node: ast.expr) -> tuple[int, str]:
    """The line of the first part of ``node`` that is not a literal, and what it is."""
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                return value.lineno, "a ** unpacking"
            for part in (key, value):
                if not _literal(part):
                    return _why(part)
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        for part in node.elts:
            if not _literal(part):
                return _why(part)
    kinds = {ast.Call: "a call", ast.JoinedStr: "an f-string", ast.Lambda: "a lambda"}
    return node.lineno, kinds.get(type(node), "an expression")


def _imported(tree: ast.Module) -> dict[str, str]:
    """Each name the module's top-level imports bind, to what it names (``gw`` → ``gateway``)."""
    names: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                top = a.name.split(".")[0]
                names[a.asname or top] = a.name if a.asname else top
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
            names.update((a.asname or a.name, f"{stmt.module}.{a.name}") for a in stmt.names if a.name != "*")
    return names


def _qualname(node: ast.expr, imported: Mapping[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in imported:
        return None
    return ".".join([imported[node.id], *reversed(parts)])


def _scope(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node`` that runs in the module's own scope at import: not the bodies of functions,
    classes, lambdas or comprehensions (only the decorators of a def or class)."""
    for child in ast.iter_child_nodes(node):
        yield child
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for deco in child.decorator_list:
                yield deco
                yield from _scope(deco)
        elif not isinstance(child, _OWN_SCOPE):
            yield from _scope(child)


def _bindings(tree: ast.Module) -> dict[str, list[ast.AST]]:
    """Every place the module's scope binds each name (a ``global`` statement in a function counts too)."""
    found: dict[str, list[ast.AST]] = {}
    for node in _scope(tree):
        names: list[str | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names = [node.id]
        elif isinstance(node, ast.alias) and node.name != "*":
            names = [node.asname or node.name.split(".")[0]]
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            names = [node.name]
        elif isinstance(node, ast.MatchMapping):
            names = [node.rest]
        for name in names:
            if name:
                found.setdefault(name, []).append(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Global):
            for name in node.names:
                found.setdefault(name, []).append(node)
    return found


def stub(file: Path, declaration: Declaration) -> Callable[..., Any]:
    """A stand-in for the declared function, sync or async like it, that says where the code is if called."""
    message = (
        f"task {declaration.kwargs.get('id')!r} is declared in {file}:{declaration.line} but its code is not "
        "imported in this process (gateway serve --executor off): a `gateway worker` runs it"
    )

    def declared(*args: Any, **kwargs: Any) -> NoReturn:
        raise TaskError(message)

    async def declared_async(*args: Any, **kwargs: Any) -> NoReturn:
        raise TaskError(message)

    fn = declared_async if declaration.is_async else declared
    fn.__name__ = fn.__qualname__ = declaration.function
    return fn
