"""The authenticated admin JSON API, mounted at /api: find, inspect, replay, rerun, trigger, bulk jobs.

I/O: HTTP in; every operation is a gateway.service.Service call. The API's HTTP statuses are chosen here.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import auth
from gateway.auth import AdminKey, Principal
from gateway.errors import AccessDenied, GatewayError, Invalid, NotFound, StoreError, unknown_key
from gateway.history import parse_since
from gateway.model import JOB_STATUSES, REPLAY, RERUN, RUN_STATUSES, EventFilter, Headers, RunFilter
from gateway.page import PAGE_MAX, Page
from gateway.service import Service
from gateway.view import event_detail, event_row, iso, job_json, rejection_row, run_detail, run_row

log = logging.getLogger("gateway.api")
BODY_CAP = 1024 * 1024  # bytes of a request body: a trigger payload, a rerun's edited input, a job request
REALM = "gateway-admin"
RETRY_AFTER = {"Retry-After": "5"}  # seconds a client should wait when the store cannot answer
EVENT_STATUSES = ("routed", "unrouted")
_CHOICES: dict[tuple[type[Any], str], tuple[str, ...]] = {
    (EventFilter, "status"): EVENT_STATUSES,
    (EventFilter, "run_status"): RUN_STATUSES,
    (RunFilter, "status"): RUN_STATUSES,
}
# Query parameter → EventFilter field (``type`` reads better in a URL than ``event_type``).
_EVENT_PARAMS = {"type": "event_type"} | {
    n: n for n in ("source", "status", "since", "until", "task", "run_status")
}
_RUN_PARAMS = {n: n for n in ("status", "task", "source", "event_id", "since", "until")}
_PAGING = ("limit", "cursor")

F = TypeVar("F", EventFilter, RunFilter)
Query = dict[str, str]
Handler = Callable[[HTTPRequest, Principal, Query], Awaitable[Response]]
Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


class _Conflict(GatewayError):
    """The item exists but is not in a state the operation applies to (a finished run, an ended job)."""


class _TooLarge(GatewayError):
    """A request body over BODY_CAP."""


# -- answers --------------------------------------------------------------------------------------------


def _error(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _failure(exc: GatewayError, scope: str) -> Response:
    """The one place an exception becomes an HTTP answer. Nothing here quotes the request's token."""
    if isinstance(exc, AccessDenied):
        if exc.status == 403:
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        elif exc.reason == "missing_token":
            # RFC 6750 §3.1: a request without credentials gets no error code in the challenge.
            challenge = f'Bearer realm="{REALM}"'
        else:
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        return _error(exc.status, exc.reason, exc.detail, {"WWW-Authenticate": challenge})
    if isinstance(exc, NotFound):
        return _error(404, "not_found", str(exc))
    if isinstance(exc, _Conflict):
        return _error(409, "conflict", str(exc))
    if isinstance(exc, Invalid):
        return _error(400, "invalid", str(exc))
    if isinstance(exc, _TooLarge):
        return _error(413, "too_large", str(exc))
    if isinstance(exc, StoreError):
        log.error("store unavailable: answering 503 to an admin API call (%s)", type(exc).__name__)
        return _error(503, "store_unavailable", "the database could not answer; retry later", RETRY_AFTER)
    raise exc


async def _http_error(request: HTTPRequest, exc: Exception) -> Response:
    """Routing's own 404/405 (an unknown path, a wrong method) in the API's JSON shape."""
    if not isinstance(exc, HTTPException):
        raise exc
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, error, exc.detail, exc.headers)


def _page(page: Page[Any], row: Callable[[Any], dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"data": [row(item) for item in page.items], "next_cursor": page.next})


def _runs(runs: tuple[Any, ...]) -> list[dict[str, str]]:
    return [{"id": run.id, "task": run.task_id} for run in runs]


# -- reading requests -----------------------------------------------------------------------------------


def _query(request: HTTPRequest, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown, repeated and empty ones: a typo must not widen a listing."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            if not allowed:
                raise Invalid(f"query: unknown parameter {name[:40]!r} (this endpoint takes none)")
            raise Invalid(str(unknown_key(name[:40], allowed, "query")))
        if name in params:
            raise Invalid(f"query: {name} is given more than once; give it once")
        if not value and name != "cursor":
            raise Invalid(f"{name}: empty; give a value, or leave the parameter out")
        params[name] = value
    return params


def _paging(params: Mapping[str, str]) -> dict[str, Any]:
    """``cursor`` and ``limit`` for a listing; the limit's range is the service's to check."""
    value = params.get("limit", "50")
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise Invalid(f"limit: expected a whole number from 1 to {PAGE_MAX}, got {value[:20]!r}")
    return {"cursor": params.get("cursor"), "limit": int(value)}


def _time(name: str, value: object, now: float) -> float:
    """A time from ISO-8601 (``2026-11-24T10:00:00Z``), a duration ago (``30m``, ``24h``, ``7d``) or, in a
    JSON body, a number of unix seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_since(value, now)
        except (argparse.ArgumentTypeError, ValueError, OverflowError, OSError):
            pass
    shown = repr(value[:40]) if isinstance(value, str) else f"a JSON {_kind(value)}"
    raise Invalid(
        f"{name}: expected an ISO-8601 time like 2026-11-24T10:00:00Z or a duration ago like 30m, 24h, 7d; "
        f"got {shown}"
    )


def _kind(value: object) -> str:
    """The JSON name of a parsed value's type, to say what was sent without quoting it."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _choice(name: str, value: str, choices: tuple[str, ...] | None) -> str:
    if choices is None or value in choices:
        return value
    hint = difflib.get_close_matches(value, choices, n=1)
    why = f"did you mean {hint[0]!r}?" if hint else f"expected one of {', '.join(choices)}"
    raise Invalid(f"{name}: unknown value {value[:40]!r} ({why})")


def _filter(cls: type[F], values: Mapping[str, object], now: float) -> F:
    """A filter from field values (None: not given), each checked; Invalid names the first bad one."""
    fields: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        if name in ("since", "until"):
            fields[name] = _time(name, value, now)
            continue
        if not isinstance(value, str) or not value:
            raise Invalid(
                f"{name}: expected a non-empty string, got {repr(value) if value == '' else _kind(value)}"
            )
        fields[name] = _choice(name, value, _CHOICES.get((cls, name)))
    if fields.get("since", -math.inf) > fields.get("until", math.inf):
        raise Invalid("since: is after until; nothing can match")
    return cls(**fields)


def _from_query(cls: type[F], params: Mapping[str, str], names: Mapping[str, str], now: float) -> F:
    return _filter(cls, {field: params.get(param) for param, field in names.items()}, now)


def _bulk_filter(kind: object, raw: object, now: float) -> tuple[str, EventFilter | RunFilter]:
    """The filter of a bulk job request: EventFilter fields for a replay, RunFilter fields for a rerun."""
    if kind not in (REPLAY, RERUN):
        raise Invalid(f"kind: expected {REPLAY!r} (route events again) or {RERUN!r} (run runs again)")
    if not isinstance(raw, dict):
        raise Invalid('filter: expected a JSON object of filter fields, e.g. {"source": "github"}')
    cls = EventFilter if kind == REPLAY else RunFilter
    fields = tuple(f.name for f in dataclasses.fields(cls))
    for name in raw:
        if name not in fields:
            raise Invalid(str(unknown_key(name[:40], fields, "filter")))
    return (
        (REPLAY, _filter(EventFilter, raw, now)) if kind == REPLAY else (RERUN, _filter(RunFilter, raw, now))
    )


async def _read_body(request: HTTPRequest) -> bytes:
    """The raw body, refused as soon as it passes BODY_CAP (also when sent chunked)."""
    too_large = _TooLarge(f"the body is larger than {BODY_CAP} bytes (1 MiB)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > BODY_CAP:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_CAP:
            raise too_large
    return bytes(body)


async def _json_object(request: HTTPRequest, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The body as a JSON object with only ``allowed`` keys; an empty body is ``{}``."""
    raw = await _read_body(request)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid("body: not valid JSON; send a JSON object") from None
    if not isinstance(data, dict):
        raise Invalid(f"body: expected a JSON object, got a JSON {_kind(data)}")
    for key in data:
        if key not in allowed:
            raise Invalid(str(unknown_key(key[:40], allowed, "body")))
    return data


# -- the app --------------------------------------------------------------------------------------------


class _Api:
    """The endpoints; each takes the request, the caller (authenticated by ``create_api``) and the query
    parameters (only those its row in the route table allows)."""

    def __init__(self, service: Service, clock: Callable[[], float], on_job: Callable[[], None] | None):
        self.service = service
        self.clock = clock
        self.on_job = on_job

    async def list_events(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        f = _from_query(EventFilter, q, _EVENT_PARAMS, self.clock())
        return _page(await self.service.events(f, **_paging(q)), event_row)

    async def show_event(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        found = await self.service.event(request.path_params["id"])
        detail = event_detail(found.event, found.runs)
        del detail["_text"]
        detail["replays"] = [{"id": i, "received_at": iso(at), "status": s} for i, at, s in found.replays]
        return JSONResponse(detail)

    async def event_body(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        event = (await self.service.event(request.path_params["id"])).event
        headers = {
            "Content-Type": event.headers.get("content-type") or "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{event.id}.bin"',
            "X-Content-Type-Options": "nosniff",  # a sender chose this content type: never render it
        }
        return Response(event.body, headers=headers)

    async def replay_event(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        event_id = request.path_params["id"]
        outcome = await self.service.replay(event_id)
        content = {"event_id": outcome.event_id, "replay_of": event_id, "runs": _runs(outcome.runs)}
        return JSONResponse(content, status_code=202)

    async def list_runs(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        f = _from_query(RunFilter, q, _RUN_PARAMS, self.clock())
        return _page(await self.service.runs(f, **_paging(q)), run_row)

    async def show_run(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        found = await self.service.run(request.path_params["id"])
        detail = run_detail(found.run, found.attempts)
        del detail["_text"]
        detail["rerun_of"] = found.run.rerun_of
        detail["reruns"] = [{"id": i, "created_at": iso(at), "status": s} for i, at, s in found.reruns]
        return JSONResponse(detail)

    async def rerun(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """``{"payload": ...}`` reruns with that input; ``{}`` or no body with the original input."""
        run_id = request.path_params["id"]
        body = await _json_object(request, ("payload",))
        run = await self.service.rerun(run_id, payload=body.get("payload"), edited="payload" in body)
        return JSONResponse({"run_id": run.id, "rerun_of": run_id, "task": run.task_id}, status_code=202)

    async def cancel_run(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        try:
            run = await self.service.cancel(request.path_params["id"])
        except Invalid as exc:  # the run exists but has started or finished
            raise _Conflict(str(exc)) from None
        return JSONResponse(run_row(run))

    async def list_rejections(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        # Only the time window of a filter; it also refuses a since after the until.
        window = _from_query(EventFilter, q, {"since": "since", "until": "until"}, self.clock())
        page = await self.service.rejections(
            source=q.get("source"),
            reason=q.get("reason"),
            since=window.since,
            until=window.until,
            **_paging(q),
        )
        return _page(page, rejection_row)

    async def stats(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        since = _time("since", q["since"], self.clock()) if "since" in q else None
        return JSONResponse(await self.service.counts(since=since))

    async def start_bulk(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """``{"kind": "replay"|"rerun", "filter": {...}, "dry_run": bool}``: preview, or record the job."""
        body = await _json_object(request, ("kind", "filter", "dry_run"))
        kind, f = _bulk_filter(body.get("kind"), body.get("filter", {}), self.clock())
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise Invalid(f"dry_run: expected true or false, got a JSON {_kind(dry_run)}")
        if dry_run:
            preview = await self.service.preview(kind, f)
            return JSONResponse({"kind": preview.kind, "count": preview.count, "sample": preview.sample})
        job = await self.service.start_job(kind, f, requested_by=who.subject)
        if self.on_job is not None:
            self.on_job()
        return JSONResponse({"job": job_json(job)}, status_code=202)

    async def list_jobs(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        status = _choice("status", q["status"], JOB_STATUSES) if "status" in q else None
        page = await self.service.jobs(status=status, **_paging(q))
        return _page(page, job_json)

    async def show_job(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        return JSONResponse(job_json(await self.service.job(request.path_params["id"])))

    async def cancel_job(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        try:
            job = await self.service.cancel_job(request.path_params["id"])
        except Invalid as exc:  # the job exists but has ended
            raise _Conflict(str(exc)) from None
        return JSONResponse(job_json(job))

    async def trigger(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """Start a task with ``{"payload": ...}``; a repeated Idempotency-Key answers 200 and the original."""
        body = await _read_body(request)
        outcome = await self.service.trigger(
            request.path_params["id"],
            body,
            Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]),
            idempotency_key=request.headers.get("idempotency-key"),
            requested_by=who.subject,
            remote_addr=request.client.host if request.client else None,
        )
        content: dict[str, Any] = {"event_id": outcome.event_id, "runs": _runs(outcome.runs)}
        if outcome.duplicate:
            return JSONResponse({**content, "duplicate": True})
        return JSONResponse(content, status_code=202)


def create_api(
    service: Service,
    key: AdminKey,
    *,
    clock: Callable[[], float] = time.time,
    on_job: Callable[[], None] | None = None,
) -> Starlette:
    """The admin API as an app with relative routes: mount it with ``Mount("/api", app=create_api(...))``.

    Every call needs ``Authorization: Bearer <token>`` with the endpoint's scope. ``on_job()`` is called
    after a bulk job is recorded (it wakes the gateway's job worker)."""
    api = _Api(service, clock, on_job)

    def guarded(scope: str, params: tuple[str, ...], handler: Handler) -> Endpoint:
        async def endpoint(request: HTTPRequest) -> Response:
            try:
                principal = auth.authenticate(request.headers.get("authorization"), key, now=clock())
                auth.require(principal, scope)
                return await handler(request, principal, _query(request, params))
            except GatewayError as exc:
                return _failure(exc, scope)

        return endpoint

    events, runs = (*_EVENT_PARAMS, *_PAGING), (*_RUN_PARAMS, *_PAGING)
    table: list[tuple[str, str, str, tuple[str, ...], Handler]] = [
        ("GET", "/events", "read", events, api.list_events),
        ("GET", "/events/{id}", "read", (), api.show_event),
        ("GET", "/events/{id}/body", "read", (), api.event_body),
        ("POST", "/events/{id}/replay", "replay", (), api.replay_event),
        ("GET", "/runs", "read", runs, api.list_runs),
        ("GET", "/runs/{id}", "read", (), api.show_run),
        ("POST", "/runs/{id}/rerun", "replay", (), api.rerun),
        ("POST", "/runs/{id}/cancel", "replay", (), api.cancel_run),
        ("GET", "/rejections", "read", ("source", "reason", "since", "until", *_PAGING), api.list_rejections),
        ("GET", "/stats", "read", ("since",), api.stats),
        ("POST", "/replays", "replay", (), api.start_bulk),
        ("GET", "/jobs", "read", ("status", *_PAGING), api.list_jobs),
        ("GET", "/jobs/{id}", "read", (), api.show_job),
        ("POST", "/jobs/{id}/cancel", "replay", (), api.cancel_job),
        ("POST", "/tasks/{id}/trigger", "trigger", (), api.trigger),
    ]
    routes = [
        Route(path, guarded(scope, q, handler), methods=[verb]) for verb, path, scope, q, handler in table
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
