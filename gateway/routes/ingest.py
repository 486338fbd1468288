"""Turn a verified request into the event and runs to record. Pure: no I/O; ``now`` and ids come in. The
body is parsed by payload.py.

admit(config, source, request, verdict, now) -> Admission(event, runs)      a delivery
readmit(config, event, now) -> Admission                 a stored event, routed again (replay)
new_run(config, task_id, input, event_id, now) -> Run    a rerun or a triggered run
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from gateway.errors import Invalid
from gateway.model import QUEUED, ROUTED, UNROUTED, Event, Headers, Inbound, Payload, Run, Verdict, new_id
from gateway.routes.load import Config
from gateway.routes.mapping import map_input
from gateway.routes.match import Route, match
from gateway.routes.paths import EventView, lookup
from gateway.routes.payload import parse_payload
from gateway.routes.sources import Source

# Headers that carry credentials in clear: stored as REDACTED so the database never holds a secret.
REDACTED = "[redacted]"
REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-gitlab-token", "x-api-key"}
)


def redact(headers: Headers, extra: tuple[str, ...] = ()) -> Headers:
    """Headers as stored: credentials (the usual ones, plus a scheme's ``secret_headers``) replaced."""
    hidden = REDACTED_HEADERS.union(name.lower() for name in extra) if extra else REDACTED_HEADERS
    if hidden.isdisjoint(headers):
        return headers
    return Headers((k, REDACTED if k in hidden else v) for k, v in headers.pairs)


def redact_query(
    url: str, query: tuple[tuple[str, str], ...], names: tuple[str, ...]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The URL and query as stored: values of ``names`` (a scheme's ``secret_query``) replaced."""
    if not names or not any(k in names for k, _ in query):
        return url, query
    hidden = tuple((k, REDACTED if k in names else v) for k, v in query)
    try:
        parts = urlsplit(url)
    except ValueError:  # a hostile Host header (e.g. "[") made the URL unparseable: keep none of it
        return url.split("?", 1)[0] + "?" + urlencode(hidden), hidden
    return urlunsplit(parts._replace(query=urlencode(hidden))), hidden


@dataclass(frozen=True, slots=True)
class Admission:
    event: Event
    runs: tuple[Run, ...]


# Standard Webhooks senders use the webhook-* header family and Svix the svix-* one; both presets accept
# either, so a default key path in one family is also looked up in the other.
_HEADER_FAMILIES = (("headers.webhook-", "headers.svix-"), ("headers.svix-", "headers.webhook-"))


def _find(view: EventView, path: str) -> tuple[bool, Any]:
    found = lookup(view, path)
    if not found[0]:
        for prefix, other in _HEADER_FAMILIES:
            if path.lower().startswith(prefix):
                return lookup(view, other + path[len(prefix) :])
    return found


def _text(found: tuple[bool, Any]) -> str | None:
    ok, value = found
    if not ok or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_options(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Task defaults with a route's overrides on top (``retry`` merges key by key)."""
    options = dict(defaults)
    for key, value in overrides.items():
        if key == "retry":
            options["retry"] = {**options.get("retry", {}), **value}
        else:
            options[key] = value
    return options


def admit(
    config: Config,
    source: Source,
    request: Inbound,
    verdict: Verdict,
    now: float,
    payload: Payload | None = None,
) -> Admission:
    """Decide what to record for a verified request: the event, and one queued run per matched route.

    ``payload`` is the parsed body when the caller has parsed it already (for a handshake check).
    """
    payload = payload or parse_payload(request.headers.get("content-type"), request.body)
    event_id = new_id("evt", now)
    view = EventView(event_id, source.name, None, request.headers, request.query, payload.data)
    event_type = _text(_find(view, source.event_type)) if source.event_type else None
    dedupe_key = _text(_find(view, source.dedupe)) if source.dedupe else None
    view = EventView(event_id, source.name, event_type, request.headers, request.query, payload.data)
    stored_headers = redact(request.headers, source.scheme.secret_headers)
    stored_url, stored_query = redact_query(request.url, request.query, source.scheme.secret_query)
    # Input mapping sees the redacted headers, so a credential never lands in a run's stored input.
    mapping_view = EventView(event_id, source.name, event_type, stored_headers, stored_query, payload.data)
    runs = plan_runs(config, view, mapping_view, now)
    event = Event(
        id=event_id,
        source=source.name,
        event_type=event_type,
        dedupe_key=dedupe_key,
        status=ROUTED if runs else UNROUTED,
        received_at=now,
        method=request.method,
        url=stored_url,
        headers=stored_headers,
        query=stored_query,
        body=request.body,
        payload=payload,
        verification=verdict.label,
        remote_addr=request.remote_addr,
    )
    return Admission(event, runs)


def plan_runs(config: Config, view: EventView, mapping_view: EventView, now: float) -> tuple[Run, ...]:
    """One queued run per route of ``config`` that matches ``view``, its input mapped from ``mapping_view``
    (the same delivery with credentials redacted)."""
    return tuple(
        new_run(config, route.task, map_input(route.input, mapping_view), view.id, now, route=route)
        for route in match(config.routes, view)
    )


def new_run(
    config: Config,
    task_id: str,
    run_input: Any,
    event_id: str,
    now: float,
    *,
    route: Route | None = None,
    rerun_of: str | None = None,
    idempotency_key: str | None = None,
) -> Run:
    """A queued run of ``task_id`` with the task's current options and ``route``'s overrides on top.

    Raises Invalid when the task is not in ``config`` (any more).
    """
    task = config.tasks.get(task_id)
    if task is None:
        known = ", ".join(sorted(config.tasks)) or "none"
        raise Invalid(f"task {task_id!r} is not defined in {config.file.name} any more (tasks: {known})")
    options = resolve_options(task.options(), route.options if route is not None else {})
    key = None
    if task.concurrency_key:
        key_view = EventView(event_id, "", None, Headers(), (), run_input)
        key = _text(lookup(key_view, "body" + task.concurrency_key[len("payload") :]))
    return Run(
        id=new_id("run", now),
        event_id=event_id,
        route_id=route.id if route is not None else None,
        task_id=task.id,
        input=run_input,
        status=QUEUED,
        created_at=now,
        queue=options["queue"],
        priority=options["priority"],
        concurrency_key=key,
        options=options,
        rerun_of=rerun_of,
        idempotency_key=idempotency_key,
    )


def stored_view(event: Event, event_type: str | None = None) -> EventView:
    """What matching and mapping see of a stored event (its headers as stored: credentials redacted)."""
    return EventView(
        event.id,
        event.source,
        event.event_type if event_type is None else event_type,
        event.headers,
        event.query,
        event.payload.data,
    )


def current_type(config: Config, event: Event) -> str | None:
    """The event type under the current config: looked up again with the source's ``event_type`` path
    (it may have been fixed since), else the type stored when the event arrived."""
    source = config.sources.get(event.source)
    if source is None or not source.event_type:
        return event.event_type
    found = _text(_find(stored_view(event), source.event_type))
    return event.event_type if found is None else found


def readmit(config: Config, event: Event, now: float) -> Admission:
    """Route a stored event again through the current config: a new event (``replay_of`` the original,
    no dedupe key) and one queued run per route that matches it now. Raises Invalid for a source that is
    no longer configured."""
    if event.source not in config.sources:
        raise Invalid(
            f"event {event.id} came from source {event.source!r}, which is not in {config.file.name} any "
            "more; nothing could match it"
        )
    event_type = current_type(config, event)
    replay = replace(
        event,
        id=new_id("evt", now),
        event_type=event_type,
        dedupe_key=None,
        received_at=now,
        replay_of=event.id,
    )
    view = stored_view(replay)
    runs = plan_runs(config, view, view, now)
    return Admission(replace(replay, status=ROUTED if runs else UNROUTED), runs)
