"""Routes against history: stored events (admitted under one routes.yaml) compared with another one."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from gateway.model import Event, Headers, Inbound, Run, Verdict
from gateway.records.compare import Comparison, EventChange, RouteLine, Tally, as_json, compare_event, render
from gateway.routes.ingest import admit
from gateway.routes.load import Config

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z

ROUTES = """
tasks: [{module}]
sources:
  github: {verify: github, secret: gh-secret}
  shop: {verify: none, event_type: body.type}
routes:
  - id: deploy-main
    source: github
    event: push
    when: {body.ref: refs/heads/main}
    task: deploy-preview
    input: {repo: body.repository.full_name, sha: body.after}
  - id: audit-pushes
    source: github
    event: push
    task: record-payment
  - id: orders
    source: shop
    event: order.*
    task: sync-subscription
"""

Stored = tuple[Event, tuple[Run, ...]]


def edit(old: str, new: str, text: str = ROUTES) -> str:
    assert old in text
    return text.replace(old, new)


def deliver(
    config: Config, source: str, body: dict[str, Any], *, event_id: str = "", at: float = NOW
) -> Stored:
    """A delivery admitted under ``config``: the event and the runs it got on arrival (as stored)."""
    headers = [("content-type", "application/json")]
    if source == "github":
        headers.append(("x-github-event", "push"))
    request = Inbound("POST", f"http://gw/hooks/{source}", Headers(headers), json.dumps(body).encode())
    admission = admit(config, config.sources[source], request, Verdict(verified=True, scheme="test"), at)
    if not event_id:
        return admission.event, admission.runs
    runs = tuple(replace(r, event_id=event_id) for r in admission.runs)
    return replace(admission.event, id=event_id), runs


def push(config: Config, ref: str, **kw: Any) -> Stored:
    return deliver(config, "github", {"ref": ref, "after": "abc", "repository": {"full_name": "o/r"}}, **kw)


def order(config: Config, total: int, kind: str = "order.created", **kw: Any) -> Stored:
    return deliver(config, "shop", {"type": kind, "total": total}, **kw)


def history(config: Config) -> list[Stored]:
    """Four events as they arrived under ``config``: pushes to main and to a branch, an order, a refund."""
    return [
        push(config, "refs/heads/main", event_id="evt_1", at=NOW),
        push(config, "refs/heads/dev", event_id="evt_2", at=NOW + 60),
        order(config, 50, event_id="evt_3", at=NOW + 120),
        order(config, 10, "refund.created", event_id="evt_4", at=NOW + 180),
    ]


def tally(config: Config, events: list[Stored], keep: int = 20) -> Comparison:
    t = Tally(keep=keep)
    for event, runs in events:
        t.add(config, event, runs)
    return t.report()


def line(report: Comparison, route_id: str) -> RouteLine:
    [found] = [x for x in report.lines if x.route_id == route_id]
    return found


@pytest.fixture
def then(load_config: Callable[..., Config]) -> Config:
    return load_config(ROUTES)


def test_unchanged_history_has_no_changes(then: Config, load_config: Callable[..., Config]) -> None:
    now = load_config(ROUTES)  # the same routes.yaml, loaded again
    stored = history(then)
    assert [compare_event(now, e, runs) for e, runs in stored] == [None] * 4
    report = tally(now, stored)
    assert (report.events, report.changed, report.changes, report.sources_missing) == (4, 0, (), ())
    assert report.lines == (
        RouteLine("deploy-main", "deploy-preview", 1, 1, 0, 0, 0, ""),
        RouteLine("audit-pushes", "record-payment", 2, 2, 0, 0, 0, ""),
        RouteLine("orders", "sync-subscription", 1, 1, 0, 0, 0, ""),
    )
    assert render(report, header="h").endswith(
        "\n\nno changes: the current routes.yaml routes these 4 events exactly as they were routed"
    )


def test_an_event_that_matched_nothing_then_and_now_is_counted_but_not_a_change(then: Config) -> None:
    refund = order(then, 10, "refund.created")
    assert refund[1] == ()
    report = tally(then, [refund])
    assert (report.events, report.changed) == (1, 0)
    assert render(report, header="").endswith(
        "no changes: the current routes.yaml routes this 1 event exactly as it was routed"
    )


def test_a_new_route_gains_the_events_it_would_match(
    then: Config, load_config: Callable[..., Config]
) -> None:
    now = load_config(ROUTES + "  - {id: all-shop, source: shop, task: record-payment}\n")
    stored = history(then)
    change = compare_event(now, *stored[3])
    assert change == EventChange("evt_4", "shop", "refund.created", NOW + 180, ("all-shop",), (), ())
    report = tally(now, stored)
    assert report.changed == 2
    assert report.lines[-1] == RouteLine("all-shop", "record-payment", 0, 2, 2, 0, 0, "new route")


def test_a_removed_route_loses_its_events(then: Config, load_config: Callable[..., Config]) -> None:
    removed = "  - id: audit-pushes\n    source: github\n    event: push\n    task: record-payment\n"
    now = load_config(edit(removed, ""))
    stored = history(then)
    assert compare_event(now, *stored[1]) == EventChange(
        "evt_2", "github", "push", NOW + 60, (), ("audit-pushes",), ()
    )
    report = tally(now, stored)
    assert [x.route_id for x in report.lines] == ["deploy-main", "orders", "audit-pushes"]
    assert report.lines[-1] == RouteLine(
        "audit-pushes", "record-payment", 2, 0, 0, 2, 0, "removed from routes.yaml"
    )
    assert [c.event_id for c in report.changes] == ["evt_1", "evt_2"]


def test_a_tightened_when_loses_only_the_events_it_now_excludes(
    then: Config, load_config: Callable[..., Config]
) -> None:
    now = load_config(edit("event: order.*\n", "event: order.*\n    when: {body.total: {$gt: 100}}\n"))
    stored = [order(then, 50, event_id="evt_small"), order(then, 500, event_id="evt_big")]
    assert compare_event(now, *stored[0]) == EventChange(
        "evt_small", "shop", "order.created", NOW, (), ("orders",), ()
    )
    assert compare_event(now, *stored[1]) is None
    assert line(tally(now, stored), "orders") == RouteLine("orders", "sync-subscription", 2, 1, 0, 1, 0, "")


def test_an_input_mapping_change_shows_as_input_changed(
    then: Config, load_config: Callable[..., Config]
) -> None:
    mapping = "input: {repo: body.repository.full_name, sha: body.after}"
    now = load_config(
        edit(mapping, "input: {repo: body.repository.full_name, sha: body.after, ref: body.ref}")
    )
    stored = history(then)
    assert compare_event(now, *stored[0]) == EventChange(
        "evt_1", "github", "push", NOW, (), (), ("deploy-main",)
    )
    report = tally(now, stored)
    assert report.changed == 1
    assert line(report, "deploy-main") == RouteLine("deploy-main", "deploy-preview", 1, 1, 0, 0, 1, "")


def test_reordered_input_keys_are_not_a_change(then: Config, load_config: Callable[..., Config]) -> None:
    mapping = "input: {repo: body.repository.full_name, sha: body.after}"
    now = load_config(edit(mapping, "input: {sha: body.after, repo: body.repository.full_name}"))
    assert compare_event(now, *push(then, "refs/heads/main")) is None


def test_an_input_value_that_went_from_1_to_true_is_a_change(load_config: Callable[..., Config]) -> None:
    config = load_config(
        edit("task: sync-subscription\n", "task: sync-subscription\n    input: {paid: body.paid}\n")
    )
    event, [run] = deliver(config, "shop", {"type": "order.paid", "paid": True})
    assert run.input == {"paid": True}
    changed = compare_event(config, event, [replace(run, input={"paid": 1})])
    assert changed is not None and changed.input_changed == ("orders",)


def test_a_route_pointed_at_another_task_is_noted(then: Config, load_config: Callable[..., Config]) -> None:
    now = load_config(edit("task: record-payment", "task: sync-subscription"))
    report = tally(now, history(then))
    assert report.changed == 0
    assert line(report, "audit-pushes") == RouteLine(
        "audit-pushes", "sync-subscription", 2, 2, 0, 0, 0, "task changed: record-payment → sync-subscription"
    )
    assert render(report, header="h").endswith(
        "\n\nno event would match other routes; 1 route runs another task now (see NOTE)"
    )


def test_events_of_a_removed_source_lose_every_route(
    then: Config, load_config: Callable[..., Config]
) -> None:
    without_shop = ROUTES.split("  - id: orders")[0].replace(
        "  shop: {verify: none, event_type: body.type}\n", ""
    )
    now = load_config(without_shop)
    stored = history(then)
    assert compare_event(now, *stored[2]) == EventChange(
        "evt_3", "shop", "order.created", NOW + 120, (), ("orders",), ()
    )
    assert compare_event(now, *stored[3]) is None  # the refund matched nothing then either
    report = tally(now, stored)
    assert report.sources_missing == (("shop", 2),)
    assert (report.events, report.changed) == (4, 1)
    assert line(report, "orders").note == "removed from routes.yaml"


def test_reruns_and_runs_without_a_route_are_not_arrival_matches(then: Config) -> None:
    event, [audit] = push(then, "refs/heads/dev")
    extra = [
        replace(audit, id="run_manual", route_id=None, task_id="deploy-preview"),  # a triggered run
        replace(audit, id="run_rerun", route_id="deploy-main", rerun_of=audit.id),
    ]
    assert compare_event(then, event, [audit, *extra]) is None
    report = tally(then, [(event, (audit, *extra))])
    assert line(report, "deploy-main").then == 0
    assert report.changed == 0


def test_keep_caps_the_list_but_counts_stay_exact(then: Config, load_config: Callable[..., Config]) -> None:
    now = load_config(edit("event: push\n    task: record-payment", "event: tag\n    task: record-payment"))
    stored = [push(then, f"refs/heads/b{i}", event_id=f"evt_{i}") for i in range(5)]
    report = tally(now, stored, keep=2)
    assert (report.events, report.changed) == (5, 5)
    assert [c.event_id for c in report.changes] == ["evt_0", "evt_1"]
    assert line(report, "audit-pushes") == RouteLine("audit-pushes", "record-payment", 5, 0, 0, 5, 0, "")
    assert "events routed differently (the first 2 of 5):" in render(report, header="h")


def test_keep_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="keep must be >= 0, got -1"):
        Tally(keep=-1)


def test_no_events_renders_a_plain_verdict() -> None:
    report = Tally().report()
    assert render(report, header="routes.yaml against events since 2023-11-14") == (
        "routes.yaml against events since 2023-11-14\n\nno stored events to compare"
    )


def mixed_report(then: Config, load_config: Callable[..., Config]) -> Comparison:
    """A route removed, one added, one pointed at another task, and an event of a source that is gone."""
    text = edit("  - id: audit-pushes\n    source: github\n    event: push\n    task: record-payment\n", "")
    text = edit("task: sync-subscription", "task: record-payment", text)
    now = load_config(text + "  - {id: all-shop, source: shop, task: deploy-preview}\n")
    stored = history(then)
    legacy = replace(stored[3][0], id="evt_5", source="legacy", event_type="ping", received_at=NOW + 240)
    legacy_run = Run("run_5", "evt_5", "legacy-ping", "record-payment", {}, "completed", NOW + 240)
    return tally(now, [*stored, (legacy, (legacy_run,))], keep=3)


def test_render_shows_routes_changes_sources_and_a_verdict(
    then: Config, load_config: Callable[..., Config]
) -> None:
    text = render(mixed_report(then, load_config), header="routes.yaml against 5 stored events since 7d")
    assert text == (
        "routes.yaml against 5 stored events since 7d\n"
        "\n"
        "ROUTE         TASK            THEN  NOW  GAINED  LOST  INPUT CHANGED  NOTE\n"
        "deploy-main   deploy-preview     1    1\n"
        "orders        record-payment     1    1                               "
        "task changed: sync-subscription → record-payment\n"
        "all-shop      deploy-preview     0    2      +2                       new route\n"
        "audit-pushes  record-payment     2    0            -2                 removed from routes.yaml\n"
        "legacy-ping   record-payment     1    0            -1                 removed from routes.yaml\n"
        "\n"
        "events routed differently (the first 3 of 5):\n"
        "EVENT  SOURCE  TYPE           RECEIVED                  GAINED    LOST          INPUT CHANGED\n"
        "evt_1  github  push           2023-11-14T22:13:20.000Z            audit-pushes\n"
        "evt_2  github  push           2023-11-14T22:14:20.000Z            audit-pushes\n"
        "evt_3  shop    order.created  2023-11-14T22:15:20.000Z  all-shop\n"
        "\n"
        "source 'legacy' is not in routes.yaml any more: its 1 event would match nothing\n"
        "\n"
        "5 of 5 events would be routed differently; 1 route runs another task now (see NOTE)"
    )


def test_as_json_round_trips_through_json(then: Config, load_config: Callable[..., Config]) -> None:
    data = as_json(mixed_report(then, load_config))
    assert json.loads(json.dumps(data)) == data
    assert (data["events"], data["changed"], data["sources_missing"]) == (5, 5, {"legacy": 1})
    assert data["routes"][2] == {
        "route_id": "all-shop",
        "task_id": "deploy-preview",
        "then": 0,
        "now": 2,
        "gained": 2,
        "lost": 0,
        "input_changed": 0,
        "note": "new route",
    }
    assert data["changes"][0] == {
        "event_id": "evt_1",
        "source": "github",
        "event_type": "push",
        "received_at": "2023-11-14T22:13:20.000Z",
        "gained": [],
        "lost": ["audit-pushes"],
        "input_changed": [],
    }


def test_large_counts_are_shown_with_thousands_separators() -> None:
    lines = (RouteLine("r", "t", 12_345, 11_145, 0, 1_200, 0, ""),)
    text = render(Comparison(12_345, 1_200, lines, (), ()), header="")
    assert text == (
        "ROUTE  TASK  THEN    NOW     GAINED  LOST    INPUT CHANGED  NOTE\n"
        "r      t     12,345  11,145          -1,200\n"
        "\n"
        "1,200 of 12,345 events would be routed differently"
    )
