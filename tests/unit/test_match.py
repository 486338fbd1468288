"""Route matching and input mapping: paths, `when:` operators, event patterns, input maps, problems."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import Problem
from gateway.match import (
    EventView,
    Route,
    check_path,
    compile_events,
    compile_input,
    compile_when,
    lookup,
    map_input,
    match,
)
from gateway.model import Headers

PUSH = {
    "ref": "refs/heads/main",
    "after": "abc123",
    "forced": False,
    "size": 3,
    "ratio": 0.5,
    "note": None,
    "labels": ["bug", "ui", 1],
    "flags": [True],
    "repository": {"full_name": "acme/api", "private": True},
    "commits": [{"id": "c1", "tags": ["x"]}, {"id": "c2"}],
}


def view(
    body: Any = PUSH,
    *,
    headers: list[tuple[str, str]] | None = None,
    query: tuple[tuple[str, str], ...] = (("token", "t1"), ("page", "2"), ("token", "t2")),
    event_type: str | None = "push",
    source: str = "github",
) -> EventView:
    pairs = headers if headers is not None else [("X-GitHub-Event", "push"), ("X-Count", "5")]
    return EventView("evt_1", source, event_type, Headers(pairs), query, body)


def holds(when: object, v: EventView | None = None) -> bool:
    problems: list[Problem] = []
    condition = compile_when(when, "routes[0].when", problems)
    assert problems == []
    return condition.test(v or view())


def when_problems(when: object) -> list[str]:
    problems: list[Problem] = []
    compile_when(when, "routes[3].when", problems)
    return [str(p) for p in problems]


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


KEYS = st.text(alphabet="ab01 -$", min_size=1, max_size=2)  # shared by bodies and paths, so paths hit
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=12,
)
body_steps = st.one_of(KEYS.map(".{}".format), st.integers(0, 3).map("[{}]".format))
path_strings = st.one_of(
    st.lists(body_steps, max_size=4).map(lambda steps: "body" + "".join(steps)),
    st.sampled_from(["headers.", "query.", "event."]).flatmap(
        lambda root: st.text(max_size=8).map(root.__add__)
    ),
    st.text(max_size=12),
)


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


# --- when: operators --------------------------------------------------------------------------------

OPERATOR_CASES = [
    # literal equality ($eq)
    ({"body.ref": "refs/heads/main"}, True),
    ({"body.ref": "refs/heads/dev"}, False),
    ({"body.missing": None}, False),
    ({"body.note": None}, True),
    ({"body.repository.private": True}, True),
    ({"body.repository.private": 1}, False),
    ({"body.size": True}, False),
    ({"body.size": 3.0}, True),
    ({"body.flags": [True]}, True),
    ({"body.flags": [1]}, False),
    ({"body.repository": {"full_name": "acme/api", "private": True}}, True),
    ({"body.repository": {"full_name": "acme/api", "private": 1}}, False),
    ({"body.ref": {"$eq": "refs/heads/main"}}, True),
    # $ne
    ({"body.ref": {"$ne": "refs/heads/dev"}}, True),
    ({"body.ref": {"$ne": "refs/heads/main"}}, False),
    ({"body.missing": {"$ne": "x"}}, True),
    ({"body.forced": {"$ne": 0}}, True),
    # $in / $nin
    ({"body.ref": {"$in": ["refs/heads/main", "refs/heads/dev"]}}, True),
    ({"body.ref": {"$in": ["refs/heads/dev"]}}, False),
    ({"body.missing": {"$in": [None]}}, False),
    ({"body.repository.private": {"$in": [1]}}, False),
    ({"body.ref": {"$nin": ["refs/heads/dev"]}}, True),
    ({"body.ref": {"$nin": ["refs/heads/main"]}}, False),
    ({"body.missing": {"$nin": ["x"]}}, True),
    # $exists
    ({"body.ref": {"$exists": True}}, True),
    ({"body.note": {"$exists": True}}, True),
    ({"body.missing": {"$exists": True}}, False),
    ({"body.missing": {"$exists": False}}, True),
    ({"body.ref": {"$exists": False}}, False),
    # $regex
    ({"body.ref": {"$regex": "heads/ma"}}, True),
    ({"body.ref": {"$regex": "^main"}}, False),
    ({"body.size": {"$regex": "3"}}, False),
    ({"body.missing": {"$regex": ".*"}}, False),
    # $gt $gte $lt $lte
    ({"body.size": {"$gt": 2}}, True),
    ({"body.size": {"$gt": 3}}, False),
    ({"body.size": {"$gte": 3}}, True),
    ({"body.size": {"$lt": 3.5}}, True),
    ({"body.ratio": {"$lte": 0.5}}, True),
    ({"body.ratio": {"$lt": 0.5}}, False),
    ({"body.ref": {"$gt": "refs/heads/a"}}, True),
    ({"body.ref": {"$lt": "refs/heads/a"}}, False),
    ({"body.ref": {"$gt": 1}}, False),
    ({"body.size": {"$gt": "1"}}, False),
    ({"body.forced": {"$lt": 1}}, False),
    ({"body.note": {"$lt": 1}}, False),
    ({"body.missing": {"$gt": 0}}, False),
    ({"body.size": {"$gte": 1, "$lt": 5}}, True),
    ({"body.size": {"$gte": 1, "$lt": 3}}, False),
    # $contains
    ({"body.ref": {"$contains": "heads"}}, True),
    ({"body.ref": {"$contains": "tags"}}, False),
    ({"body.labels": {"$contains": "bug"}}, True),
    ({"body.labels": {"$contains": "bu"}}, False),
    ({"body.labels": {"$contains": 1}}, True),
    ({"body.labels": {"$contains": True}}, False),
    ({"body.size": {"$contains": 3}}, False),
    ({"body.repository": {"$contains": "full_name"}}, False),
    ({"body.missing": {"$contains": "x"}}, False),
]


@pytest.mark.parametrize(("when", "expected"), OPERATOR_CASES)
def test_operators_on_body_values(when: dict[str, Any], expected: bool) -> None:
    assert holds(when) is expected


HEADER_AND_QUERY_CASES = [
    ({"headers.x-github-event": "push"}, True),
    ({"headers.X-GITHUB-EVENT": {"$in": ["issues", "push"]}}, True),
    ({"headers.X-Count": 5}, True),
    ({"headers.X-Count": 5.0}, False),
    ({"headers.X-Count": {"$in": [4, 5]}}, True),
    ({"headers.X-Count": {"$ne": 5}}, False),
    ({"headers.X-Count": {"$gt": 4}}, True),
    ({"headers.X-Count": {"$gt": 4.5, "$lte": 5}}, True),
    ({"headers.X-Count": {"$gt": 5}}, False),
    ({"headers.X-Count": {"$gt": "10"}}, True),
    ({"headers.X-GitHub-Event": {"$gt": 1}}, False),
    ({"headers.X-Count": {"$contains": 5}}, True),
    ({"headers.X-Missing": {"$exists": False}}, True),
    ({"headers.X-Missing": {"$ne": "x"}}, True),
    ({"query.page": 2}, True),
    ({"query.token": "t1"}, True),
    ({"query.token": "t2"}, False),
    ({"event.type": "push"}, True),
    ({"event.source": {"$regex": "^git"}}, True),
    ({"event.id": {"$exists": True}}, True),
]


@pytest.mark.parametrize(("when", "expected"), HEADER_AND_QUERY_CASES)
def test_operators_on_header_query_and_event_values(when: dict[str, Any], expected: bool) -> None:
    assert holds(when) is expected


def test_yaml_bools_match_headers_in_string_form() -> None:
    v = view(headers=[("X-Debug", "true"), ("X-Off", "false")])
    assert holds({"headers.X-Debug": True, "headers.X-Off": False}, v)
    assert not holds({"headers.X-Debug": False}, v)


def test_form_body_values_are_matched() -> None:
    v = view({"action": "opened", "tag": ["a", "b"]})
    assert holds({"body.action": "opened", "body.tag": {"$contains": "b"}}, v)


def test_raw_body_is_matched_as_a_string() -> None:
    v = view("ping from monitor")
    assert holds({"body": {"$regex": "^ping"}, "body.0": {"$exists": False}}, v)


def test_missing_event_type_only_passes_negative_checks() -> None:
    v = view(event_type=None)
    assert holds({"event.type": {"$exists": False}}, v)
    assert holds({"event.type": {"$ne": "push"}}, v)
    assert not holds({"event.type": None}, v)


# --- when: groups -----------------------------------------------------------------------------------

GROUP_CASES = [
    (None, True),
    ({}, True),
    ({"body.ref": "refs/heads/main", "body.size": 3}, True),
    ({"body.ref": "refs/heads/main", "body.size": 4}, False),
    ({"any": [{"body.size": 4}, {"body.ref": "refs/heads/main"}]}, True),
    ({"any": [{"body.size": 4}, {"body.ref": "refs/heads/dev"}]}, False),
    ({"all": [{"body.size": 3}, {"body.ref": "refs/heads/main"}]}, True),
    ({"all": [{"body.size": 3}, {"body.ref": "refs/heads/dev"}]}, False),
    ({"not": {"body.ref": "refs/heads/dev"}}, True),
    ({"not": {"body.ref": "refs/heads/main"}}, False),
    ({"not": {"body.ref": "refs/heads/main", "body.size": 4}}, True),
    ({"any": [{"not": {"body.size": 3}}, {"all": [{"body.forced": False}, {"event.type": "push"}]}]}, True),
    ({"body.size": 3, "any": [{"body.size": 4}], "not": {"body.forced": True}}, False),
]


@pytest.mark.parametrize(("when", "expected"), GROUP_CASES)
def test_groups_combine_conditions(when: object, expected: bool) -> None:
    assert holds(when) is expected


# --- when: problems ---------------------------------------------------------------------------------

WHEN_PROBLEMS = [
    (
        {"body.ref": {"$regx": "^x"}},
        "routes[3].when.body.ref: unknown operator '$regx' (did you mean '$regex'?)",
    ),
    (
        {"body.ref": {"$foo": 1}},
        "routes[3].when.body.ref: unknown operator '$foo' "
        "(known: $contains, $eq, $exists, $gt, $gte, $in, $lt, $lte, $ne, $nin, $regex)",
    ),
    ({"body.ref": {"$in": "main"}}, "routes[3].when.body.ref: $in needs a list, got 'main'"),
    ({"body.ref": {"$nin": None}}, "routes[3].when.body.ref: $nin needs a list, got None"),
    ({"body.ref": {"$exists": "yes"}}, "routes[3].when.body.ref: $exists needs true or false, got 'yes'"),
    (
        {"body.ref": {"$regex": "(main"}},
        "routes[3].when.body.ref: bad $regex '(main': missing ), unterminated subpattern at position 0",
    ),
    (
        {"body.ref": {"$regex": 5}},
        "routes[3].when.body.ref: bad $regex 5: first argument must be string or compiled pattern",
    ),
    ({"body.size": {"$gt": True}}, "routes[3].when.body.size: $gt needs a number or a string, got True"),
    ({"body.size": {"$lte": [1]}}, "routes[3].when.body.size: $lte needs a number or a string, got [1]"),
    (
        {"body.ref": {"$eq": "x", "main": 1}},
        "routes[3].when.body.ref: mixes operators with plain keys ('main'); use one or the other",
    ),
    (
        {"headers.X-Env": ["prod", "dev"]},
        "routes[3].when.headers.X-Env: headers.X-Env is a single string, not a list; "
        "to allow several values use $in",
    ),
    ({"bdy.ref": "main"}, "routes[3].when.bdy.ref: unknown root 'bdy' in 'bdy.ref' (did you mean 'body'?)"),
    ({"body..ref": "main"}, "routes[3].when.body..ref: empty segment in 'body..ref'"),
    ({1: "main"}, "routes[3].when.1: a path must be a string, got 1"),
    ({"$or": [{"body.a": 1}]}, "routes[3].when: '$or' is not a path; group conditions with any, all or not"),
    ({"not": [{"body.a": 1}]}, "routes[3].when.not: not needs a mapping of conditions, got [{'body.a': 1}]"),
    ({"not": {}}, "routes[3].when.not: not needs a mapping of conditions, got {}"),
    ({"any": []}, "routes[3].when.any: any needs a non-empty list of conditions, got []"),
    (
        {"all": {"body.a": 1}},
        "routes[3].when.all: all needs a non-empty list of conditions, got {'body.a': 1}",
    ),
    ({"any": ["body.a"]}, "routes[3].when.any[0]: expected a mapping of path: value, got 'body.a'"),
    ({"any": [None]}, "routes[3].when.any[0]: expected a mapping of path: value, got None"),
    (
        {"not": {"any": [{"body.a": {"$exists": 1}}]}},
        "routes[3].when.not.any[0].body.a: $exists needs true or false, got 1",
    ),
    ("body.ref", "routes[3].when: expected a mapping of path: value, got 'body.ref'"),
]


@pytest.mark.parametrize(("when", "message"), WHEN_PROBLEMS)
def test_bad_when_is_reported(when: object, message: str) -> None:
    assert when_problems(when) == [message]


def test_every_when_problem_is_reported_at_once() -> None:
    assert when_problems({"body.a": {"$regx": 1}, "qury.b": 1, "any": []}) == [
        "routes[3].when.body.a: unknown operator '$regx' (did you mean '$regex'?)",
        "routes[3].when.qury.b: unknown root 'qury' in 'qury.b' (did you mean 'query'?)",
        "routes[3].when.any: any needs a non-empty list of conditions, got []",
    ]


# --- event patterns ---------------------------------------------------------------------------------

EVENT_CASES = [
    (None, "push", True),
    (None, None, True),
    ("push", "push", True),
    ("push", "pull_request", False),
    ("push", None, False),
    (["push", "pull_request"], "pull_request", True),
    (["push", "pull_request"], "issues", False),
    ("invoice.*", "invoice.paid", True),
    ("invoice.*", "invoice.payment.failed", True),
    ("invoice.*", "invoice", False),
    ("invoice.*", "Invoice.paid", False),
    ("invoice.*", None, False),
    ("*", None, False),
    (["push", "check_?un"], "check_run", True),
    ("ping[12]", "ping2", True),
    ("ping[12]", "ping3", False),
]


@pytest.mark.parametrize(("spec", "event_type", "expected"), EVENT_CASES)
def test_event_patterns(spec: object, event_type: str | None, expected: bool) -> None:
    problems: list[Problem] = []
    pattern = compile_events(spec, "routes[0].event", problems)
    assert problems == []
    assert pattern.test(event_type) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (5, "routes[0].event: expected an event type or a non-empty list of them, got 5"),
        ([], "routes[0].event: expected an event type or a non-empty list of them, got []"),
        (
            {"type": "push"},
            "routes[0].event: expected an event type or a non-empty list of them, got {'type': 'push'}",
        ),
        (["push", 3], "routes[0].event[1]: an event type must be a non-empty string, got 3"),
        ("", "routes[0].event: an event type must be a non-empty string, got ''"),
    ],
)
def test_bad_event_pattern_is_reported(spec: object, message: str) -> None:
    problems: list[Problem] = []
    compile_events(spec, "routes[0].event", problems)
    assert [str(p) for p in problems] == [message]


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


# --- match ------------------------------------------------------------------------------------------


def route(index: int, source: str = "github", event: object = None, when: object = None) -> Route:
    problems: list[Problem] = []
    r = Route(
        id=f"r{index}",
        source=source,
        task="deploy",
        events=compile_events(event, f"routes[{index}].event", problems),
        when=compile_when(when, f"routes[{index}].when", problems),
        input=None,
        options={},
        index=index,
    )
    assert problems == []
    return r


def test_match_returns_every_matching_route_in_file_order() -> None:
    routes = [
        route(0, when={"body.ref": "refs/heads/main"}),
        route(1, source="stripe"),
        route(2, event="pull_request"),
        route(3, event=["push", "issues"]),
        route(4, when={"body.size": {"$gt": 10}}),
        route(5),
    ]
    assert [r.id for r in match(routes, view())] == ["r0", "r3", "r5"]


def test_match_filters_by_source() -> None:
    routes = [route(0, source="stripe", event="invoice.*"), route(1)]
    assert [r.id for r in match(routes, view(source="stripe", event_type="invoice.paid"))] == ["r0"]
    assert [r.id for r in match(routes, view(source="gitlab"))] == []
