"""Paths into a delivery (``body.a.b``, ``headers.X``, ``query.q``, ``event.type``): parse once, look up fast.

Pure: no I/O. ``headers.<Name>`` (case-insensitive, first value), ``query.<name>`` (first value),
``body`` (the whole parsed body), ``body.<a.b>`` with list indexes as ``items.0`` or ``items[0]``,
and ``event.id``, ``event.type``, ``event.source``. A path that meets a missing key, a short list or a
scalar is *missing*.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import Problem
from gateway.model import Headers

_ROOTS = ("body", "event", "headers", "query")
_INDEX = re.compile(r"\[([0-9]+)\](?=[.\[]|$)")  # `items[0]` → `items.0`, only before `.`, `[` or the end
MISSING: tuple[bool, Any] = (False, None)
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class EventView:
    """What matching and mapping see of one delivery."""

    id: str
    source: str
    event_type: str | None
    headers: Headers
    query: tuple[tuple[str, str], ...]
    body: Any  # json: dict/list/scalar; form: dict[str, str | list[str]]; raw: str


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed path. ``steps`` pairs each body key with its list index when the key is a number."""

    root: str
    name: str = ""
    steps: tuple[tuple[str, int | None], ...] = ()

    def get(self, view: EventView) -> tuple[bool, Any]:
        if self.root == "body":
            cur = view.body
            for key, index in self.steps:
                if isinstance(cur, dict):
                    cur = cur.get(key, _ABSENT)
                    if cur is _ABSENT:
                        return MISSING
                elif index is not None and isinstance(cur, list) and index < len(cur):
                    cur = cur[index]
                else:
                    return MISSING
            return True, cur
        if self.root == "headers":
            value = view.headers.get(self.name)
        elif self.root == "query":
            value = next((v for k, v in view.query if k == self.name), None)
        else:
            value = view.event_type if self.name == "type" else view.id if self.name == "id" else view.source
        return MISSING if value is None else (True, value)


def _parse(path: str) -> Path | str:
    """The parsed path, or a message saying what is wrong with it."""
    root, _, name = path.partition(".")
    if root == "body" or root.startswith("body["):
        keys = _INDEX.sub(r".\1", path).split(".")[1:]  # `items[0]` → `items.0`
        if any("[" in k or "]" in k for k in keys):
            return f"bad list index in {path!r}; write items[0] or items.0"
        if "" in keys:
            return f"empty segment in {path!r}"
        steps = tuple((k, int(k) if k.isascii() and k.isdigit() else None) for k in keys)
        return Path("body", steps=steps)
    if root in ("headers", "query"):
        example = "'headers.X-GitHub-Event'" if root == "headers" else "'query.token'"
        return Path(root, name) if name else f"{path!r} needs a name, e.g. {example}"
    if root == "event":
        if name in ("id", "source", "type"):
            return Path(root, name)
        return f"unknown field {path!r}; use event.id, event.type or event.source"
    hint = difflib.get_close_matches(root, _ROOTS, n=1)
    tail = f"did you mean {hint[0]!r}?" if hint else "a path starts with body, headers., query. or event."
    return f"unknown root {root!r} in {path!r} ({tail})"


def lookup(view: EventView, path: str) -> tuple[bool, Any]:
    """``(found, value)`` for ``path`` in ``view``; ``(False, None)`` for anything missing or invalid."""
    parsed = _parse(path) if isinstance(path, str) else None
    return parsed.get(view) if isinstance(parsed, Path) else MISSING


def check_path(path: object, where: str, problems: list[Problem]) -> str | None:
    """``path`` if it is a valid path, else ``None`` with a problem at ``where``."""
    return path if compile_path(path, where, problems) and isinstance(path, str) else None


def compile_path(path: object, where: str, problems: list[Problem]) -> Path | None:
    parsed = _parse(path) if isinstance(path, str) else f"a path must be a string, got {path!r}"
    if isinstance(parsed, str):
        problems.append(Problem(where, parsed))
        return None
    return parsed
