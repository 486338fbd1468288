"""Paths into a delivery: lookup and load-time checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given

from gateway.errors import Problem
from gateway.routes.mapping import compile_input, map_input
from gateway.routes.match import compile_when
from gateway.routes.paths import check_path, lookup
from tests.support.strategies import json_values, path_strings
from tests.support.views import PUSH, view

# --- lookup -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("body", (True, PUSH)),
        ("body.ref", (True, "refs/heads/main")),
        ("body.repository.full_name", (True, "acme/api")),
        ("body.commits.1.id", (True, "c2")),
        ("body.commits[1].id", (True, "c2")),
        ("body.commits[0].tags[0]", (True, "x")),
        ("body.note", (True, None)),
        ("body.commits.2.id", (False, None)),
        ("body.missing.deeper", (False, None)),
        ("body.ref.length", (False, None)),
        ("body.repository.0", (False, None)),
        ("headers.x-github-event", (True, "push")),
        ("headers.X-GITHUB-EVENT", (True, "push")),
        ("headers.X-Missing", (False, None)),
        ("query.token", (True, "t1")),
        ("query.Token", (False, None)),
        ("event.id", (True, "evt_1")),
        ("event.type", (True, "push")),
        ("event.source", (True, "github")),
        ("bdy.ref", (False, None)),
        ("body..ref", (False, None)),
    ],
)
def test_lookup_finds_values_by_path(path: str, expected: tuple[bool, Any]) -> None:
    assert lookup(view(), path) == expected


def test_lookup_gives_the_first_of_repeated_headers() -> None:
    v = view(headers=[("X-Tag", "a"), ("x-tag", "b")])
    assert lookup(v, "headers.X-Tag") == (True, "a")


def test_lookup_indexes_a_list_body_in_both_styles() -> None:
    v = view([{"id": 1}, {"id": 2}])
    assert lookup(v, "body[1].id") == (True, 2)
    assert lookup(v, "body.1.id") == (True, 2)
    assert lookup(v, "body.-1") == (False, None)


def test_lookup_reads_a_numeric_key_of_a_mapping_as_a_key() -> None:
    assert lookup(view({"0": "zero"}), "body.0") == (True, "zero")
    assert lookup(view({"0": "zero"}), "body[0]") == (True, "zero")


def test_lookup_reads_form_bodies_with_repeated_fields() -> None:
    v = view({"name": "ann", "tag": ["a", "b"]})
    assert lookup(v, "body.name") == (True, "ann")
    assert lookup(v, "body.tag.1") == (True, "b")


def test_lookup_treats_a_raw_body_as_one_string() -> None:
    v = view("plain text")
    assert lookup(v, "body") == (True, "plain text")
    assert lookup(v, "body.0") == (False, None)


def test_lookup_reports_a_missing_event_type_as_missing() -> None:
    assert lookup(view(event_type=None), "event.type") == (False, None)


@given(body=json_values, path=path_strings)
def test_lookup_and_compiled_routes_never_raise_on_any_body_and_valid_path(body: Any, path: str) -> None:
    problems: list[Problem] = []
    assume(check_path(path, "p", problems) == path)
    v = view(body, headers=[("a", "1")], query=(("b", "2"),))
    found, value = lookup(v, path)
    assert found or value is None
    ops = {"$gt": 0, "$lte": "m", "$contains": "a", "$in": [1, "a", None, [True]], "$regex": "a"}
    condition = compile_when(
        {"any": [{path: ops}, {path: {"$ne": {"a": [1]}}}, {path: {"$eq": body}}]}, "w", problems
    )
    assert problems == []
    assert condition.test(v) in (True, False)
    assert map_input(compile_input({"x": path, "y": [path]}, "i", problems), v) == {"x": value, "y": [value]}


# --- check_path -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["body", "body.a.b", "body[0]", "body.items[0][1].id", "headers.X-Hub-Signature", "query.a.b"]
)
def test_check_path_accepts_valid_paths(path: str) -> None:
    problems: list[Problem] = []
    assert check_path(path, "sources.gh.event_type", problems) == path
    assert problems == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (5, "a path must be a string, got 5"),
        ("bdy.ref", "unknown root 'bdy' in 'bdy.ref' (did you mean 'body'?)"),
        ("header.X", "unknown root 'header' in 'header.X' (did you mean 'headers'?)"),
        ("", "unknown root '' in '' (a path starts with body, headers., query. or event.)"),
        ("headers", "'headers' needs a name, e.g. 'headers.X-GitHub-Event'"),
        ("query.", "'query.' needs a name, e.g. 'query.token'"),
        ("event.kind", "unknown field 'event.kind'; use event.id, event.type or event.source"),
        ("body..ref", "empty segment in 'body..ref'"),
        ("body.", "empty segment in 'body.'"),
        ("body.items[x]", "bad list index in 'body.items[x]'; write items[0] or items.0"),
        ("body.items[0]x", "bad list index in 'body.items[0]x'; write items[0] or items.0"),
    ],
)
def test_check_path_reports_bad_paths(path: object, message: str) -> None:
    problems: list[Problem] = []
    assert check_path(path, "sources.gh.event_type", problems) is None
    assert problems == [Problem("sources.gh.event_type", message)]
