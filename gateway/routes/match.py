"""Route matching: compile `event:` and `when:` once, test them per delivery.

Pure: no I/O, no clock. Everything is parsed at load time; ``test`` only walks data. Paths:
gateway/routes/paths.py.

``when:`` semantics:
- ``{path: literal}`` is ``$eq``. Equality is type-strict for bools at any depth (``true != 1``),
  ``1 == 1.0``, and a missing field equals nothing (not even ``null``).
- ``$ne`` / ``$nin`` hold on a missing field; ``$eq $in $regex $gt… $contains`` do not.
- ``$exists: true|false`` asks only whether the path is present (a ``null`` value is present).
- ``$regex`` is ``re.search``, compiled at load, and only ever matches strings.
- ``$gt $gte $lt $lte`` compare numbers with numbers and strings with strings; anything else is false.
- ``$contains`` is a substring test on strings and a (type-strict) membership test on lists.
- Header, query and event values are strings: YAML numbers and bools given for them are compared in
  their string form (``5`` → ``"5"``, ``true`` → ``"true"``); a numeric ``$gt``… applies ``float()`` to them.
- Several keys in one mapping, or several operators on one path, must all hold; ``any: [..]``,
  ``all: [..]`` and ``not: {..}`` group conditions.
- ``event:`` is exact or an ``fnmatch`` glob (``invoice.*``); no event type matches only omitted ``event:``.
"""

from __future__ import annotations

import difflib
import fnmatch
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import Problem
from gateway.routes.mapping import InputMap
from gateway.routes.paths import EventView, Path, compile_path

_NUMBERS = (int, float)


# --- when:
Check = Callable[[bool, Any, Any], bool]  # (found, value, operand) -> holds


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled ``when:`` tree. This base node is the empty condition: it always holds."""

    def test(self, view: EventView) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Group(Condition):
    """``all`` of ``parts`` hold, or ``any`` of them, or ``not`` all of them."""

    parts: tuple[Condition, ...]
    kind: str = "all"

    def test(self, view: EventView) -> bool:
        want = self.kind != "any"  # any: stop at the first that holds; all/not: at the first that fails
        for part in self.parts:
            if part.test(view) is not want:
                return self.kind == "not" if want else True
        return self.kind == "all"


@dataclass(frozen=True, slots=True)
class FieldTest(Condition):
    """One path and the operator checks that must all hold for its value."""

    path: Path
    checks: tuple[tuple[Check, Any], ...]

    def test(self, view: EventView) -> bool:
        found, value = self.path.get(view)
        for check, operand in self.checks:  # noqa: SIM110 (a loop is ~3x faster than all() over a genexpr)
            if not check(found, value, operand):
                return False
        return True


def _same(a: Any, b: Any) -> bool:
    """Equality that never lets a bool equal a number, at any depth. Exact types: JSON makes no others."""
    kind = type(a)
    if kind is not type(b):
        return kind in _NUMBERS and type(b) in _NUMBERS and bool(a == b)  # 1 == 1.0, but True != 1
    if kind is list:
        return len(a) == len(b) and all(map(_same, a, b))
    if kind is dict:
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def _member(value: Any, options: Sequence[Any]) -> bool:
    for option in options:  # noqa: SIM110 (a loop is faster than any() over a genexpr)
        if _same(value, option):
            return True
    return False


def _order(found: bool, value: Any, operand: tuple[Callable[[Any, Any], bool], Any, bool]) -> bool:
    compare, bound, text = operand
    if not found:
        return False
    if isinstance(bound, str):
        return isinstance(value, str) and compare(value, bound)
    if text and isinstance(value, str):  # a header or query value against a number
        try:
            value = float(value)
        except ValueError:
            return False
    return type(value) in _NUMBERS and compare(value, bound)


def _contains(found: bool, value: Any, operand: Any) -> bool:
    if isinstance(value, str):
        return found and isinstance(operand, str) and operand in value
    return found and isinstance(value, list) and _member(operand, value)


_CHECKS: dict[str, Check] = {
    "$eq": lambda found, value, operand: found and _same(value, operand),
    "$ne": lambda found, value, operand: not found or not _same(value, operand),
    "$in": lambda found, value, operand: found and _member(value, operand),
    "$nin": lambda found, value, operand: not found or not _member(value, operand),
    "$exists": lambda found, value, operand: found is operand,
    "$regex": lambda found, value, operand: found and isinstance(value, str) and bool(operand.search(value)),
    "$contains": _contains,
    **dict.fromkeys(("$gt", "$gte", "$lt", "$lte"), _order),
}
_COMPARE = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def _text(value: Any) -> Any:
    """The string form a header or query value would have for a YAML scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if type(value) in _NUMBERS else value


def _operand(op: str, arg: Any, text: bool, where: str, problems: list[Problem]) -> tuple[Check, Any] | None:
    """The compiled check for one ``$op: arg`` pair, or ``None`` with a problem."""
    bad, fix = None, _text if text else lambda v: v
    if op not in _CHECKS:
        hint = difflib.get_close_matches(op, _CHECKS, n=1)
        tail = f"did you mean {hint[0]!r}?" if hint else f"known: {', '.join(sorted(_CHECKS))}"
        bad = f"unknown operator {op!r} ({tail})"
    elif op in ("$in", "$nin"):
        if isinstance(arg, list):
            return _CHECKS[op], tuple(fix(x) for x in arg)
        bad = f"{op} needs a list, got {arg!r}"
    elif op == "$exists":
        if isinstance(arg, bool):
            return _CHECKS[op], arg
        bad = f"$exists needs true or false, got {arg!r}"
    elif op == "$regex":
        try:
            if isinstance(arg, bytes):  # YAML !!binary: it compiles, then fails on every text it meets
                raise TypeError("a pattern must be text, not binary data")
            return _CHECKS[op], re.compile(arg)
        except (re.error, TypeError, OverflowError) as exc:  # OverflowError: a{4294967296}
            bad = f"bad $regex {arg!r}: {exc}"
        except RecursionError:  # hundreds of nested groups
            bad = f"bad $regex {arg!r}: nested too deeply"
    elif op in _COMPARE:
        if type(arg) in _NUMBERS or isinstance(arg, str):
            return _order, (_COMPARE[op], arg, text)
        bad = f"{op} needs a number or a string, got {arg!r}"
    if bad:
        problems.append(Problem(where, bad))
        return None
    return _CHECKS[op], fix(arg)


def _field(key: object, spec: Any, where: str, problems: list[Problem]) -> Condition:
    path = compile_path(key, where, problems)
    text = path is not None and path.root != "body"  # header, query and event values are strings
    ops = [k for k in spec if isinstance(k, str) and k.startswith("$")] if isinstance(spec, dict) else []
    bad = None
    if ops and len(ops) < len(spec):
        plain = ", ".join(repr(k) for k in spec if k not in ops)
        bad = f"mixes operators with plain keys ({plain}); use one or the other"
    elif text and isinstance(spec, list):
        bad = f"{key} is a single string, not a list; to allow several values use $in"
    if bad:
        problems.append(Problem(where, bad))
        return Condition()
    pairs = spec.items() if ops else [("$eq", spec)]
    checks = [_operand(op, arg, text, where, problems) for op, arg in pairs]
    if path is None or None in checks:
        return Condition()
    return FieldTest(path, tuple(c for c in checks if c is not None))


def _when(spec: object, where: str, problems: list[Problem]) -> Condition:
    if not isinstance(spec, dict):
        problems.append(Problem(where, f"expected a mapping of path: value, got {spec!r}"))
        return Condition()
    parts: list[Condition] = []
    for key, value in spec.items():
        at = f"{where}.{key}"
        if key == "not" and isinstance(value, dict) and value:
            parts.append(Group((_when(value, at, problems),), "not"))
        elif key == "not":
            problems.append(Problem(at, f"not needs a mapping of conditions, got {value!r}"))
        elif key in ("any", "all") and isinstance(value, list) and value:
            group = tuple(_when(s, f"{at}[{i}]", problems) for i, s in enumerate(value))
            parts.append(Group(group, key))
        elif key in ("any", "all"):
            problems.append(Problem(at, f"{key} needs a non-empty list of conditions, got {value!r}"))
        elif isinstance(key, str) and key.startswith("$"):
            problems.append(Problem(where, f"{key!r} is not a path; group conditions with any, all or not"))
        else:
            parts.append(_field(key, value, at, problems))
    return parts[0] if len(parts) == 1 else Group(tuple(parts))


def compile_when(spec: object, path: str, problems: list[Problem]) -> Condition:
    """The condition for a ``when:`` spec; ``None`` (omitted) always holds."""
    return Condition() if spec is None else _when(spec, path, problems)


# --- event:
@dataclass(frozen=True, slots=True)
class EventPattern:
    """The event types a route accepts: ``exact`` names and compiled ``globs``; ``exact=None`` is any."""

    exact: frozenset[str] | None = None
    globs: tuple[re.Pattern[str], ...] = ()

    def test(self, event_type: str | None) -> bool:
        if self.exact is None or event_type is None:
            return self.exact is None
        return event_type in self.exact or any(g.match(event_type) for g in self.globs)


def compile_events(spec: object, path: str, problems: list[Problem]) -> EventPattern:
    """The pattern for an ``event:`` spec: ``None``, a name or glob, or a non-empty list of them."""
    if spec is None:
        return EventPattern()
    if not (isinstance(spec, str) or (isinstance(spec, list) and spec)):
        problems.append(Problem(path, f"expected an event type or a non-empty list of them, got {spec!r}"))
        return EventPattern(frozenset())
    named = [(spec, path)] if isinstance(spec, str) else [(s, f"{path}[{i}]") for i, s in enumerate(spec)]
    exact, globs = set(), []
    for name, where in named:
        if not isinstance(name, str) or not name:
            problems.append(Problem(where, f"an event type must be a non-empty string, got {name!r}"))
        elif any(c in name for c in "*?["):
            globs.append(re.compile(fnmatch.translate(name)))  # what fnmatch.fnmatchcase does, compiled once
        else:
            exact.add(name)
    return EventPattern(frozenset(exact), tuple(globs))


# --- routes
@dataclass(frozen=True, slots=True)
class Route:
    """One compiled entry of ``routes:`` in routes.yaml."""

    id: str
    source: str
    task: str
    events: EventPattern
    when: Condition
    input: InputMap | None
    options: Mapping[str, Any]  # executor overrides (retry/timeout/queue/…); opaque here
    index: int  # position in routes.yaml: routes[index]


def match(routes: Sequence[Route], view: EventView) -> list[Route]:
    """Every route for ``view.source`` whose event pattern and condition hold, in the given (file) order."""
    hit = [r for r in routes if r.source == view.source and r.events.test(view.event_type)]
    return [r for r in hit if r.when.test(view)]
