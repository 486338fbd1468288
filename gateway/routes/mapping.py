"""Input mapping: compile a route's ``input:`` once, build each run's input from a delivery. Pure: no I/O.

Values are paths (missing ones give ``None``), nested mappings, lists, or ``{$literal: value}`` constants;
without ``input:`` a task receives the whole parsed body.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from gateway.errors import Problem
from gateway.routes.paths import EventView, Path, compile_path


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class InputMap:
    """A compiled ``input:`` mapping: each output key and what builds its value."""

    items: tuple[tuple[str, _Node], ...]


_Node = Path | _Literal | InputMap | tuple[Any, ...]  # a tuple is a list of nodes


def _build(node: _Node, view: EventView) -> Any:
    if isinstance(node, Path):
        return node.get(view)[1]
    if isinstance(node, InputMap):
        return {key: _build(value, view) for key, value in node.items}
    if isinstance(node, tuple):
        return [_build(item, view) for item in node]
    # A fresh copy each time: a task that mutates its input must not change the next run's.
    return copy.deepcopy(node.value) if isinstance(node.value, list | dict) else node.value


def _node(spec: object, where: str, problems: list[Problem]) -> _Node | None:
    if isinstance(spec, str):
        return compile_path(spec, where, problems)
    if isinstance(spec, list):
        return tuple(n for i, s in enumerate(spec) if (n := _node(s, f"{where}[{i}]", problems)) is not None)
    if not isinstance(spec, dict):
        problems.append(Problem(where, f"expected a path, mapping, list or {{$literal: ...}}, got {spec!r}"))
        return None
    if "$literal" in spec:
        if len(spec) > 1:
            problems.append(Problem(where, "$literal must be the only key in its mapping"))
        try:  # a JSON round trip: rejects dates, .nan and .inf, and turns YAML's `1:` keys into "1"
            return _Literal(json.loads(json.dumps(spec["$literal"], allow_nan=False)))
        except (TypeError, ValueError):
            problems.append(Problem(where, f"$literal must be JSON data, got {spec['$literal']!r}"))
            return None
    items: list[tuple[str, _Node]] = []
    for key, value in spec.items():
        if not isinstance(key, str) or key.startswith("$"):
            bad = "is not $literal, the only directive" if isinstance(key, str) else "is not a string"
            problems.append(Problem(f"{where}.{key}", f"input key {key!r} {bad}"))
        elif (node := _node(value, f"{where}.{key}", problems)) is not None:
            items.append((key, node))
    return InputMap(tuple(items))


def compile_input(spec: object, path: str, problems: list[Problem]) -> InputMap | None:
    """The compiled ``input:`` mapping, or ``None`` (pass the whole body) when it is omitted."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "$literal" in spec:
        problems.append(Problem(path, f"expected a mapping of name: path, got {spec!r}"))
        return None
    node = _node(spec, path, problems)
    return node if isinstance(node, InputMap) else None


def map_input(input_map: InputMap | None, view: EventView) -> Any:
    """The task input for ``view``: the mapped values (missing paths are ``None``), or the whole body."""
    return view.body if input_map is None else _build(input_map, view)
