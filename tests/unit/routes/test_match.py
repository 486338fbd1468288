"""Route matching: `when:` operators and groups, event patterns, match(), problems."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import Problem
from gateway.routes.match import Route, compile_events, compile_when, match
from gateway.routes.paths import EventView
from tests.support.views import view


def holds(when: object, v: EventView | None = None) -> bool:
    problems: list[Problem] = []
    condition = compile_when(when, "routes[0].when", problems)
    assert problems == []
    return condition.test(v or view())


def when_problems(when: object) -> list[str]:
    problems: list[Problem] = []
    compile_when(when, "routes[3].when", problems)
    return [str(p) for p in problems]


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
