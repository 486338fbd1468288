"""Input mapping: paths, nesting, literals, missing values, problems."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from gateway.errors import Problem
from gateway.routes.mapping import compile_input, map_input
from gateway.routes.paths import EventView
from tests.support.views import PUSH, view

# --- input maps -------------------------------------------------------------------------------------


def mapped(spec: object, v: EventView | None = None) -> Any:
    problems: list[Problem] = []
    input_map = compile_input(spec, "routes[0].input", problems)
    assert problems == []
    return map_input(input_map, v or view())


def test_omitted_input_passes_the_whole_body() -> None:
    assert mapped(None) is PUSH
    assert mapped(None, view("raw text")) == "raw text"


def test_input_maps_paths() -> None:
    spec = {"repo": "body.repository.full_name", "sha": "body.after", "event": "headers.x-github-event"}
    assert mapped(spec) == {"repo": "acme/api", "sha": "abc123", "event": "push"}


def test_input_maps_nested_mappings_lists_and_literals() -> None:
    spec = {
        "git": {"ref": "body.ref", "first": "body.commits[0].id"},
        "ids": ["body.commits.0.id", "body.commits.1.id", {"$literal": "fixed"}],
        "env": {"$literal": "prod"},
        "limits": {"$literal": {"cpu": 2, "tags": ["a"]}},
        "whole": "body.repository",
    }
    assert mapped(spec) == {
        "git": {"ref": "refs/heads/main", "first": "c1"},
        "ids": ["c1", "c2", "fixed"],
        "env": "prod",
        "limits": {"cpu": 2, "tags": ["a"]},
        "whole": {"full_name": "acme/api", "private": True},
    }


def test_missing_input_paths_map_to_none() -> None:
    assert mapped({"a": "body.nope", "b": ["headers.X-Nope"], "c": "event.type"}, view(event_type=None)) == {
        "a": None,
        "b": [None],
        "c": None,
    }


def test_literal_keys_become_strings() -> None:
    assert mapped({"codes": {"$literal": {1: "one", "2": [True, None]}}}) == {
        "codes": {"1": "one", "2": [True, None]}
    }


def test_mutating_a_mapped_literal_does_not_change_the_next_input() -> None:
    problems: list[Problem] = []
    input_map = compile_input({"cfg": {"$literal": {"tags": ["a"]}}}, "routes[0].input", problems)
    first = map_input(input_map, view())
    first["cfg"]["tags"].append("b")
    assert map_input(input_map, view()) == {"cfg": {"tags": ["a"]}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("body.ref", "routes[0].input: expected a mapping of name: path, got 'body.ref'"),
        ({"$literal": 1}, "routes[0].input: expected a mapping of name: path, got {'$literal': 1}"),
        ({"a": 5}, "routes[0].input.a: expected a path, mapping, list or {$literal: ...}, got 5"),
        (
            {"a": ["body.x", None]},
            "routes[0].input.a[1]: expected a path, mapping, list or {$literal: ...}, got None",
        ),
        ({"a": "bdy.x"}, "routes[0].input.a: unknown root 'bdy' in 'bdy.x' (did you mean 'body'?)"),
        ({"a": {"b": "body..x"}}, "routes[0].input.a.b: empty segment in 'body..x'"),
        ({"a": {"$literal": 1, "b": 2}}, "routes[0].input.a: $literal must be the only key in its mapping"),
        (
            {"a": {"$literal": datetime.date(2024, 1, 2)}},
            "routes[0].input.a: $literal must be JSON data, got datetime.date(2024, 1, 2)",
        ),
        (
            {"a": {"$literl": 1}},
            "routes[0].input.a.$literl: input key '$literl' is not $literal, the only directive",
        ),
        ({1: "body.x"}, "routes[0].input.1: input key 1 is not a string"),
    ],
)
def test_bad_input_is_reported(spec: object, message: str) -> None:
    problems: list[Problem] = []
    compile_input(spec, "routes[0].input", problems)
    assert [str(p) for p in problems] == [message]
