"""Properties of `input:` mapping: no payload breaks a compiled mapping, its output has the spec's shape and
is strict JSON, a path gives its value or null when missing, literals are fresh copies, no spec crashes."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.routes.mapping import InputMap, compile_input, map_input
from gateway.routes.paths import lookup
from tests.support.strategies import (
    KEYS,
    bodies,
    finite_json,
    mappings,
    names,
    path_strings,
    props,
    yaml_values,
)
from tests.support.views import view


def compiled(spec: object) -> InputMap | None:
    problems: list[Problem] = []
    input_map = compile_input(spec, "routes[0].input", problems)
    assert problems == [], problems
    return input_map


def _shape(spec: Any, built: Any) -> bool:
    """``built`` has the keys and list lengths of ``spec`` all the way down; paths and literals are leaves."""
    if isinstance(spec, dict) and "$literal" not in spec:
        return (
            isinstance(built, dict)
            and built.keys() == spec.keys()
            and all(_shape(spec[k], built[k]) for k in spec)
        )
    if isinstance(spec, list):
        return isinstance(built, list) and len(built) == len(spec) and all(map(_shape, spec, built))
    return True


@props(100)
@given(spec=mappings, body=bodies)
def test_any_mapping_on_any_payload_builds_the_specs_shape(spec: dict[str, Any], body: Any) -> None:
    assert _shape(spec, map_input(compiled(spec), view(body)))


@props(80)
@given(spec=mappings, body=finite_json)
@example(spec={"x": {"$literal": math.nan}}, body={})  # .nan in routes.yaml: not JSON a task can return
def test_a_mapped_input_is_strict_json_whenever_the_payload_is(spec: dict[str, Any], body: Any) -> None:
    problems: list[Problem] = []
    input_map = compile_input(spec, "routes[0].input", problems)
    assert problems or json.loads(json.dumps(map_input(input_map, view(body)), allow_nan=False)) is not None


@props(50)
@given(body=bodies)
def test_without_input_the_task_gets_the_payload_itself(body: Any) -> None:
    assert map_input(None, view(body)) is body
    assert map_input(compiled({"all": "body"}), view(body)) == {"all": body}


plain_keys = KEYS.filter(lambda key: not key.startswith("$"))  # "$…" is a directive, not an output key


@props(60)
@given(body=st.dictionaries(plain_keys, finite_json, max_size=4))
def test_mapping_every_key_to_its_own_path_gives_the_payload_back(body: dict[str, Any]) -> None:
    assert map_input(compiled({key: f"body.{key}" for key in body} or None), view(body)) == body


@props(100)
@given(path=path_strings, body=bodies)
def test_a_path_gives_its_value_and_null_when_it_is_missing(path: str, body: Any) -> None:
    problems: list[Problem] = []
    input_map = compile_input({"v": path, "nested": {"list": [path]}}, "routes[0].input", problems)
    if problems:
        return  # not a valid path: covered by the compile property below
    found, value = lookup(view(body), path)
    built = map_input(input_map, view(body))
    assert built == {"v": value, "nested": {"list": [value]}}
    if not found:
        assert built["v"] is None  # docs/routes.md: "a missing path gives null"


@props(60)
@given(value=finite_json, body=bodies)
def test_a_literal_is_a_fresh_copy_each_time(value: Any, body: Any) -> None:
    input_map = compiled({"x": {"$literal": value}})
    first = map_input(input_map, view(body))
    assert first == {"x": value}
    if isinstance(first["x"], list | dict):
        first["x"].clear()  # a task that mutates its input ...
    assert map_input(input_map, view(body)) == {"x": value}  # ... does not change the next run's


@props(150)
@given(
    spec=st.one_of(yaml_values, st.dictionaries(st.one_of(names, KEYS, st.integers()), yaml_values)),
    body=bodies,
)
@example(spec={"x": {"$literal": {(1, 2): 1}}}, body={})
def test_any_spec_compiles_to_problems_or_a_mapping_that_never_raises(spec: object, body: Any) -> None:
    problems: list[Problem] = []
    input_map = compile_input(spec, "routes[0].input", problems)
    assert all(p.path.startswith("routes[0].input") and p.message for p in problems)
    if not problems:
        map_input(input_map, view(body))


def test_a_literal_that_is_not_strict_json_is_a_problem() -> None:
    problems: list[Problem] = []
    assert compile_input({"x": {"$literal": [1, math.inf]}}, "routes[0].input", problems) == InputMap(())
    assert [str(p) for p in problems] == ["routes[0].input.x: $literal must be JSON data, got [1, inf]"]
