"""The authenticated admin JSON API, mounted at /api: find, inspect, replay, rerun, trigger, bulk jobs, and
rejected deliveries verified again.

I/O: HTTP in; every operation is a gateway.records.service.Service call. Its HTTP statuses are chosen here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import AccessDenied, Conflict, GatewayError, Invalid, StoreError, TooLarge, unknown_key
from gateway.keys.keyring import Keyring
from gateway.model import JOB_STATUSES, REPLAY, EventFilter, Headers, RunFilter
from gateway.records.page import Page
from gateway.records.recovery import DUPLICATE, REJECTED, STORED, recovery_summary
from gateway.records.service import Service
from gateway.records.view import (
    event_detail,
    event_summary,
    iso,
    job_json,
    rejection_summary,
    run_detail,
    run_summary,
)
from gateway.routes.payload import strict_json
from gateway.web import auth, params
from gateway.web.auth import AdminKey, Principal
from gateway.web.openapi import Operation, document
from gateway.web.responses import Answer, code_of, error, http_error, refused

log = logging.getLogger("gateway.api")
BODY_CAP = 1024 * 1024  # bytes of a request body: a trigger payload, a rerun's edited input, a job request
REALM = "gateway-admin"
Query = dict[str, str]
Handler = Callable[[HTTPRequest, Principal, Query], Awaitable[Response]]
Endpoint = Callable[[HTTPRequest], Awaitable[Response]]


# -- answers --------------------------------------------------------------------------------------------


def _failure(exc: GatewayError, scope: str) -> Response:
    """An exception as the API's answer, its status from web/responses.py's table. Nothing here quotes the
    request's token."""
    code = code_of(exc)
    if code is None:
        raise exc
    if isinstance(exc, AccessDenied):
        if exc.status == 403:
            challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        elif exc.reason == "missing_token":
            # RFC 6750 §3.1: a request without credentials gets no error code in the challenge.
            challenge = f'Bearer realm="{REALM}"'
        else:
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
        return error(code, exc.detail, {"WWW-Authenticate": challenge}, status=exc.status)
    if isinstance(exc, StoreError):
        log.error("store unavailable: answering 503 to an admin API call (%s)", type(exc).__name__)
        return error(code, "the database could not answer; retry later")
    return error(code, str(exc))


def _page(page: Page[Any], row: Callable[[Any], dict[str, Any]]) -> Response:
    return Answer({"data": [row(item) for item in page.items], "next_cursor": page.next})


def _runs(runs: tuple[Any, ...]) -> list[dict[str, str]]:
    return [{"id": run.id, "task": run.task_id} for run in runs]


# -- reading requests -----------------------------------------------------------------------------------


def _query(request: HTTPRequest, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, refusing unknown, repeated and empty ones: a typo must not widen a listing."""
    given: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in allowed:
            if not allowed:
                raise Invalid(f"query: unknown parameter {name[:40]!r} (this endpoint takes none)")
            raise Invalid(str(unknown_key(name[:40], allowed, "query")))
        if name in given:
            raise Invalid(f"query: {name} is given more than once; give it once")
        if not value and name != "cursor":
            raise Invalid(f"{name}: empty; give a value, or leave the parameter out")
        given[name] = value
    return given


async def _read_body(request: HTTPRequest) -> bytes:
    """The raw body, refused as soon as it passes BODY_CAP (also when sent chunked)."""
    too_large = TooLarge(f"the body is larger than {BODY_CAP} bytes (1 MiB)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > BODY_CAP:
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
        data = strict_json(raw)
    except (ValueError, RecursionError):
        raise Invalid("body: not valid JSON; send a JSON object") from None
    if not isinstance(data, dict):
        raise Invalid(f"body: expected a JSON object, got a JSON {params.kind(data)}")
    for key in data:
        if key not in allowed:
            raise Invalid(str(unknown_key(key[:40], allowed, "body")))
    return data


# -- the app --------------------------------------------------------------------------------------------

_EVENTS, _RUNS = (*params.EVENT_PARAMS, *params.PAGING), (*params.RUN_PARAMS, *params.PAGING)
# The route table: verb, path under /api, scope, the query parameters it takes, its handler on _Api. The
# OpenAPI description (gateway/web/openapi.py) is built from it, so the two cannot disagree.
ROUTES = (
    Operation("GET", "/events", "read", _EVENTS, "list_events"),
    Operation("GET", "/events/{id}", "read", (), "show_event"),
    Operation("GET", "/events/{id}/body", "read", (), "event_body"),
    Operation("POST", "/events/{id}/replay", "replay", (), "replay_event"),
    Operation("GET", "/runs", "read", _RUNS, "list_runs"),
    Operation("GET", "/runs/{id}", "read", (), "show_run"),
    Operation("POST", "/runs/{id}/rerun", "replay", (), "rerun"),
    Operation("POST", "/runs/{id}/cancel", "replay", (), "cancel_run"),
    Operation(
        "GET",
        "/rejections",
        "read",
        ("source", "reason", "since", "until", *params.PAGING),
        "list_rejections",
    ),
    Operation("POST", "/rejections/{id}/replay", "replay", (), "replay_rejection"),
    Operation("GET", "/stats", "read", ("since",), "stats"),
    Operation("POST", "/replays", "replay", (), "start_bulk"),
    Operation("GET", "/jobs", "read", ("status", *params.PAGING), "list_jobs"),
    Operation("GET", "/jobs/{id}", "read", (), "show_job"),
    Operation("POST", "/jobs/{id}/cancel", "replay", (), "cancel_job"),
    Operation("POST", "/tasks/{id}/trigger", "trigger", (), "trigger"),
    Operation("GET", "/openapi.json", "read", (), "openapi"),
)


class _Api:
    """The endpoints; each takes the request, the caller (authenticated by ``create_api``) and the query
    parameters (only those its row in the route table allows)."""

    def __init__(self, service: Service, clock: Callable[[], float], on_job: Callable[[], None] | None):
        self.service = service
        self.clock = clock
        self.on_job = on_job

    async def list_events(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        f = params.from_query(EventFilter, q, params.EVENT_PARAMS, self.clock())
        return _page(await self.service.events(f, **params.paging(q)), event_summary)

    async def show_event(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        found = await self.service.event(request.path_params["id"])
        detail = event_detail(found.event, found.runs, hide=self.service.signature_headers())
        del detail["_text"]
        detail["replays"] = [{"id": i, "received_at": iso(at), "status": s} for i, at, s in found.replays]
        return Answer(detail)

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
        return Answer(content, status_code=202)

    async def list_runs(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        f = params.from_query(RunFilter, q, params.RUN_PARAMS, self.clock())
        return _page(await self.service.runs(f, **params.paging(q)), run_summary)

    async def show_run(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        found = await self.service.run(request.path_params["id"])
        detail = run_detail(found.run, found.attempts)
        del detail["_text"]
        detail["rerun_of"] = found.run.rerun_of
        detail["reruns"] = [{"id": i, "created_at": iso(at), "status": s} for i, at, s in found.reruns]
        return Answer(detail)

    async def rerun(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """``{"payload": ...}`` reruns with that input; ``{}`` or no body with the original input."""
        run_id = request.path_params["id"]
        body = await _json_object(request, ("payload",))
        run = await self.service.rerun(run_id, payload=body.get("payload"), edited="payload" in body)
        return Answer({"run_id": run.id, "rerun_of": run_id, "task": run.task_id}, status_code=202)

    async def cancel_run(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        run = await self.service.cancel(request.path_params["id"])  # Conflict: it has started or finished
        return Answer(run_summary(run))

    async def list_rejections(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        # Only the time window of a filter; it also refuses a since after the until.
        window = params.from_query(EventFilter, q, {"since": "since", "until": "until"}, self.clock())
        page = await self.service.rejections(
            source=q.get("source"),
            reason=q.get("reason"),
            since=window.since,
            until=window.until,
            **params.paging(q),
        )
        return _page(page, rejection_summary)

    async def replay_rejection(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """Verify a kept rejected request again with the current secrets (freshness as when it came): 202 and
        the event it became, 200 for a duplicate of a stored one, 409 when it still fails or is not kept."""
        rejection_id = params.rejection_id(request.path_params["id"])
        keyring = Keyring(self.service.config.sources.values())
        try:
            tried = await self.service.recovery.one(rejection_id, keyring.material)
        finally:
            await keyring.aclose()
        if tried.outcome in (STORED, DUPLICATE):
            return Answer(recovery_summary(tried), status_code=202 if tried.outcome == STORED else 200)
        if tried.outcome == REJECTED:
            raise Conflict(
                f"rejection {rejection_id} still fails verification: {tried.reason}: {tried.detail}"
            )
        raise Conflict(f"rejection {rejection_id} cannot be tried again: {tried.detail}")

    async def stats(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        since = params.time("since", q["since"], self.clock()) if "since" in q else None
        return Answer(await self.service.counts(since=since))

    async def start_bulk(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """``{"kind": "replay"|"rerun", "filter": {...}, "dry_run": bool}``: preview, or record the job. A
        replay takes original deliveries only unless the filter says ``"include_replays": true``."""
        body = await _json_object(request, ("kind", "filter", "dry_run"))
        kind, f = params.bulk_filter(body.get("kind"), body.get("filter", {}), self.clock())
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise Invalid(f"dry_run: expected true or false, got a JSON {params.kind(dry_run)}")
        if dry_run:
            preview = await self.service.bulk.preview(kind, f)
            shown = {"kind": preview.kind, "count": preview.count, "sample": preview.sample}
            return Answer(shown | ({"replays_left_out": preview.left_out} if kind == REPLAY else {}))
        job = await self.service.bulk.start_job(kind, f, requested_by=who.subject)
        if self.on_job is not None:
            self.on_job()
        started: dict[str, Any] = {"job": job_json(job)}
        if kind == REPLAY:
            started["replays_left_out"] = await self.service.bulk.replays_left_out(job)
        return Answer(started, status_code=202)

    async def list_jobs(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        status = params.choice("status", q["status"], JOB_STATUSES) if "status" in q else None
        page = await self.service.bulk.jobs(status=status, **params.paging(q))
        return _page(page, job_json)

    async def show_job(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        return Answer(job_json(await self.service.bulk.job(request.path_params["id"])))

    async def cancel_job(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        job = await self.service.bulk.cancel_job(request.path_params["id"])  # Conflict: it has ended
        return Answer(job_json(job))

    async def trigger(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """Start a task with ``{"payload": ...}``; a repeated Idempotency-Key answers 200 and the original."""
        body = await _read_body(request)
        try:  # NaN, 1e999 or "\\ud800" would be stored, then break every answer that shows them
            if body.strip():
                strict_json(body)
        except (ValueError, RecursionError):
            raise Invalid('body: expected JSON like {"payload": {...}}') from None
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
            return Answer({**content, "duplicate": True})
        return Answer(content, status_code=202)

    async def openapi(self, request: HTTPRequest, who: Principal, q: Query) -> Response:
        """This API and the configured sources' hook paths, as OpenAPI 3.1 (gateway/web/openapi.py)."""
        return Answer(document(ROUTES, self.service.config.sources.values()))


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

    def guarded(scope: str, allowed: tuple[str, ...], handler: Handler) -> Endpoint:
        async def endpoint(request: HTTPRequest) -> Response:
            try:
                principal = auth.authenticate(request.headers.get("authorization"), key, now=clock())
                auth.require(principal, scope)
                return await handler(request, principal, _query(request, allowed))
            except TooLarge as exc:  # answered before the whole body was read
                return refused(_failure(exc, scope), request)
            except GatewayError as exc:
                return _failure(exc, scope)

        return endpoint

    routes = [
        Route(op.path, guarded(op.scope, op.query, getattr(api, op.name)), methods=[op.verb]) for op in ROUTES
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    # No 307 to the slash-less path: its Location would be built from the request's Host header, which the
    # client chose. A path with a trailing slash is simply not an endpoint (404).
    app.router.redirect_slashes = False
    return app
