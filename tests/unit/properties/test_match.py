"""Properties of `when:` and `event:` matching: no payload or filter makes it raise, groups are all/any/not,
each operator agrees with its negation, equality holds exactly where the value is, globs are fnmatch."""

from __future__ import annotations

import datetime
import fnmatch
import math
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.routes.match import Condition, compile_events, compile_when
from gateway.routes.paths import EventView, lookup
from tests.support.strategies import (
    HEADERS,
    KEYS,
    any_filters,
    bodies,
    body_paths,
    filters,
    finite_json,
    paths,
    props,
    yaml_values,
)
from tests.support.views import view


def _views(body: Any) -> EventView:
    return view(body, headers=HEADERS, event_type="push")


def compiled(spec: object) -> Condition:
    problems: list[Problem] = []
    condition = compile_when(spec, "routes[0].when", problems)
    assert problems == [], problems
    return condition


def holds(spec: object, v: EventView) -> bool:
    return compiled(spec).test(v)


# -- never raises ------------------------------------------------------------------------------------------


@props(120)
@given(spec=filters, body=bodies)
def test_any_valid_filter_on_any_payload_gives_true_or_false(spec: dict[str, Any], body: Any) -> None:
    assert holds(spec, _views(body)) in (True, False)


@props(150)
@given(spec=any_filters, body=bodies)
@example(spec={"body.a": {"$regex": b"a"}}, body={"a": "a"})  # a bytes pattern cannot search text
@example(spec={"body.a": {"$regex": "a{4294967296}"}}, body={})  # OverflowError, not re.error
@example(spec={"body.a": {"$regex": "(" * 600 + ")" * 600}}, body={})  # RecursionError in the re parser
@example(spec={"body.a": {"$gt": datetime.date(2024, 1, 1)}}, body={"a": 1})
def test_any_filter_compiles_to_problems_or_a_condition_that_never_raises(spec: object, body: Any) -> None:
    problems: list[Problem] = []
    condition = compile_when(spec, "routes[0].when", problems)
    for problem in problems:
        assert problem.path.startswith("routes[0].when") and problem.message
    if not problems:
        assert condition.test(_views(body)) in (True, False)


# -- the laws ----------------------------------------------------------------------------------------------


@props(80)
@given(parts=st.lists(filters, min_size=1, max_size=4), body=bodies)
def test_all_any_and_not_are_the_boolean_and_or_and_negation(parts: list[dict[str, Any]], body: Any) -> None:
    v = _views(body)
    each = [holds(part, v) for part in parts]
    assert holds({"all": parts}, v) is all(each)
    assert holds({"any": parts}, v) is any(each)
    assert holds({"not": parts[0]}, v) is not each[0]


@props(100)
@given(path=paths, operand=finite_json, options=st.lists(finite_json, max_size=3), body=bodies)
def test_each_negated_operator_is_the_negation(
    path: str, operand: Any, options: list[Any], body: Any
) -> None:
    v = _views(body)
    assert holds({path: {"$ne": operand}}, v) is not holds({path: {"$eq": operand}}, v)
    assert holds({path: {"$nin": options}}, v) is not holds({path: {"$in": options}}, v)
    assert holds({path: {"$exists": False}}, v) is not holds({path: {"$exists": True}}, v)
    assert holds({path: {"$exists": True}}, v) is lookup(v, path)[0]
    assert holds({path: {"$in": [operand]}}, v) is holds({path: {"$eq": operand}}, v)
    assert holds({path: {"$in": options}}, v) is any(holds({path: {"$eq": o}}, v) for o in options)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality as docs/routes.md defines it: numbers by value (1 == 1.0), booleans only equal booleans,
    mappings and lists compared whole."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@props(150)
@given(path=body_paths, operand=bodies, body=bodies)
def test_equality_holds_exactly_where_the_path_has_an_equal_value(path: str, operand: Any, body: Any) -> None:
    found, value = lookup(_views(body), path)
    assert holds({path: {"$eq": operand}}, _views(body)) is (found and _equal(value, operand))


def _put(body: Any, keys: list[str], value: Any) -> Any:
    """``body`` with ``value`` set at ``keys`` (made into mappings on the way where needed)."""
    if not keys:
        return value
    inner = body if isinstance(body, dict) else {}
    return {**inner, keys[0]: _put(inner.get(keys[0]), keys[1:], value)}


@props(100)
@given(keys=st.lists(KEYS, max_size=3), operand=finite_json, body=bodies)
def test_a_payload_holding_the_value_at_the_path_matches_it(keys: list[str], operand: Any, body: Any) -> None:
    path = ".".join(["body", *keys])
    assert holds({path: {"$eq": operand}}, _views(_put(body, keys, operand)))
    if not (isinstance(operand, dict) and any(k.startswith("$") for k in operand)):
        assert holds({path: operand}, _views(_put(body, keys, operand)))  # a plain value is $eq


@props(50)
@given(keys=st.lists(KEYS, min_size=1, max_size=3), operand=finite_json.filter(lambda x: x is not None))
def test_a_missing_field_equals_nothing_not_even_null(keys: list[str], operand: Any) -> None:
    v = _views({})
    path = ".".join(["body", *keys])
    for spec in ({"$eq": operand}, {"$eq": None}, {"$in": [operand, None]}, {"$regex": ".*"}, {"$gte": 0}):
        assert not holds({path: spec}, v)
    assert holds({path: {"$ne": operand}}, v) and holds({path: {"$nin": [operand]}}, v)


@props(100)
@given(path=paths, bound=st.one_of(st.integers(-3, 3), st.floats(allow_nan=False), KEYS), body=bodies)
def test_order_operators_agree_with_each_other(path: str, bound: Any, body: Any) -> None:
    v = _views(body)
    found, value = lookup(v, path)
    lt, gte = holds({path: {"$lt": bound}}, v), holds({path: {"$gte": bound}}, v)
    gt, lte = holds({path: {"$gt": bound}}, v), holds({path: {"$lte": bound}}, v)
    assert not (lt and gte) and not (gt and lte)
    comparable = found and (isinstance(value, str) if isinstance(bound, str) else _number(value, path))
    assert (lt or gte) is comparable and (gt or lte) is comparable


def _number(value: Any, path: str) -> bool:
    if isinstance(value, str) and not path.startswith("body"):  # a header against a number bound: float()
        try:
            value = float(value)
        except ValueError:
            return False
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


# -- event: -----------------------------------------------------------------------------------------------

event_names = st.text(alphabet="ab.*?[]!-", min_size=1, max_size=6)


@props(100)
@given(names=st.lists(event_names, min_size=1, max_size=3), event_type=st.text(alphabet="ab.-[]", max_size=6))
def test_event_patterns_match_as_fnmatchcase_does(names: list[str], event_type: str) -> None:
    problems: list[Problem] = []
    pattern = compile_events(names, "routes[0].event", problems)
    assert problems == []
    assert pattern.test(event_type) is any(fnmatch.fnmatchcase(event_type, name) for name in names)
    assert pattern.test(None) is False


@props(80)
@given(spec=yaml_values, event_type=st.one_of(st.none(), st.text(max_size=6)))
def test_any_event_spec_compiles_to_problems_or_a_pattern(spec: object, event_type: str | None) -> None:
    problems: list[Problem] = []
    pattern = compile_events(spec, "routes[0].event", problems)
    assert all(p.path.startswith("routes[0].event") and p.message for p in problems)
    assert pattern.test(event_type) in (True, False)
