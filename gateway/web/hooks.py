"""The Starlette app: ``POST <source path>`` → verify → admit → group-committed write → 202.

I/O: HTTP in, the store out. Every HTTP status the gateway answers with is chosen in this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from opentelemetry.trace import Span
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive

from gateway.errors import AccessDenied, Invalid, SignatureError, StoreError
from gateway.keys.keyring import Keyring
from gateway.model import Headers, Inbound, Recorded, Rejection, Secret, Verdict
from gateway.report import Delivery, Gauges
from gateway.routes.ingest import admit, parse_payload
from gateway.routes.load import Config
from gateway.routes.sources import Source
from gateway.signatures.handshake import respond
from gateway.signatures.verify import verify
from gateway.store.interface import Store
from gateway.telemetry.hub import Telemetry
from gateway.telemetry.tracing import stamp
from gateway.web.auth import check_bearer

log = logging.getLogger("gateway.app")
REJECTION_BODY_PREFIX = 1024  # bytes of a refused body kept for debugging
RETRY_AFTER = "5"  # seconds a sender should wait when the store cannot commit
# Seconds a hook body may take to arrive after its head: senders post at once (their own delivery timeouts
# are 10-30 s), so only a stalled or malicious client takes longer.
BODY_TIMEOUT = 30.0
API_PREFIX = "/api"
METRICS_PATH = "/metrics"


def _error(status: int, error: str, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def http_error(request: HTTPRequest, exc: Exception) -> Response:
    """Routing's own 404/405 in the gateway's JSON shape: a path no route matches (one with a newline, say),
    a wrong method on an admin endpoint."""
    if not isinstance(exc, HTTPException):
        raise exc
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error(exc.status_code, error, exc.detail, exc.headers)


R = TypeVar("R", bound=Response)
App = ASGIApp  # what create_app mounts at /api and serves; the server passes it along without knowing HTTP


async def _discard(receive: Receive, timeout: float) -> None:
    """Read and drop what is left of a refused body, for at most ``timeout`` seconds."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


def refused(response: R, request: HTTPRequest, timeout: float = BODY_TIMEOUT) -> R:
    """``response`` to a request refused before its whole body was read (413, 408), with the rest of the
    body read and dropped meanwhile, for up to ``timeout`` seconds. Hypercorn queues at most 10 body chunks
    for an app and, once the answer is sent, blocks on that full queue: without a reader the connection, its
    task and its chunks would be held for ever. The drain starts now, before the answer is sent."""
    drain = asyncio.ensure_future(_discard(request.receive, timeout))
    response.background = BackgroundTask(asyncio.wait_for, drain, None)  # awaited after the answer
    return response


class _TooLarge(Exception):
    def __init__(self, size: int, prefix: bytes = b"") -> None:
        self.size = size
        self.prefix = prefix


class _TooSlow(_TooLarge):
    """The body did not arrive within the body timeout."""


async def _read_body(request: HTTPRequest, cap: int, timeout: float) -> bytes:
    """Read the raw body once, refusing it as soon as it passes ``cap`` (also when sent chunked), or when it
    has not all arrived ``timeout`` seconds after the head: a sender trickling bytes must not hold a
    connection for ever (the servers bound the head: gateway/web/listen.py)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise _TooLarge(int(declared))
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > cap:
                    raise _TooLarge(len(body), bytes(body[:REJECTION_BODY_PREFIX]))
    except TimeoutError:
        raise _TooSlow(len(body), bytes(body[:REJECTION_BODY_PREFIX])) from None
    return bytes(body)


def _called_url(source: Source, request: HTTPRequest, raw_query: str) -> str:
    """The URL the sender called: the source's ``public_url`` (what a proxy hides) with the received query."""
    if source.public_url is None:
        return str(request.url)
    return f"{source.public_url}?{raw_query}" if raw_query else source.public_url


async def _verify(
    source: Source, inbound: Inbound, keyring: Keyring | None, clock: Callable[[], float]
) -> tuple[Verdict, float]:
    """Verify ``inbound``, fetching a remote key first when the source's scheme needs one; and the time."""
    material: Any = None
    if source.scheme.remote_keys and keyring is not None:  # without one, verify() says key_unavailable
        material = await keyring.material(source, inbound)
    now = clock()  # read after any key fetch, which may take a while
    verdict = verify(
        source.scheme,
        source.secrets,
        inbound,
        now=now,
        tolerance=source.tolerance,
        material=material,
        remote=source.remote,
    )
    return verdict, now


async def _refuse(source: Source, exc: SignatureError, record: Callable[[], Awaitable[None]]) -> JSONResponse:
    """401 for a delivery that failed verification (``record`` keeps it as a rejection); 503 when the
    provider's key could not be fetched: our outage, not the sender's fault, so it should retry."""
    if exc.reason == "key_unavailable":
        log.warning("answering 503 for a %s delivery: %s", source.name, exc.detail)
        return _error(503, exc.reason, exc.detail, {"Retry-After": RETRY_AFTER})
    await record()
    return _error(401, exc.reason, exc.detail)


_encode_ack = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _acknowledge(recorded: Recorded) -> Response:
    """202 with the event and its runs, once they are on disk; 200 with the original id for a duplicate."""
    runs = [{"id": run.id, "task": run.task_id} for run in recorded.runs]
    content: dict[str, Any] = {"event_id": recorded.event_id, "runs": runs}
    if recorded.duplicate:
        content["duplicate"] = True
    # JSONResponse would build a JSON encoder per answer; this one is built once.
    body = _encode_ack(content).encode()
    return Response(body, status_code=200 if recorded.duplicate else 202, media_type="application/json")


def _reserved(config: Config, prefix: str, fix: str) -> None:
    for source in config.sources.values():
        if source.path == prefix or source.path.startswith(prefix + "/"):
            raise Invalid(
                f"source {source.name} is served at {source.path}, under the gateway's {prefix}: {fix}"
            )


def _api_mount(config: Config, api: ASGIApp | None) -> list[BaseRoute]:
    """The admin API at /api, ahead of the hooks; refused when a source's path is under /api."""
    if api is None:
        return []
    _reserved(config, API_PREFIX, "give it another path:, or serve the API on its own port (--admin-port)")
    return [Mount(API_PREFIX, app=api)]


def metrics_endpoint(
    telemetry: Telemetry, gauges: Callable[[], Awaitable[Gauges]], token: Secret | None = None
) -> Callable[[HTTPRequest], Awaitable[Response]]:
    """GET /metrics: Prometheus' text format, with the queue and executor gauges read at scrape time. With a
    ``token`` (GATEWAY_METRICS_TOKEN) a scrape needs ``Authorization: Bearer <token>``."""

    async def metrics(request: HTTPRequest) -> Response:
        assert telemetry.metrics is not None
        if token is not None:
            try:
                check_bearer(request.headers.get("authorization"), token)
            except AccessDenied as exc:
                challenge = {"WWW-Authenticate": 'Bearer realm="metrics"'}
                return _error(exc.status, exc.reason, exc.detail, challenge)
        try:
            snapshot = await gauges()
        except StoreError as exc:  # the counters still answer; the queue gauges wait for the store
            log.warning("/metrics: could not read the queues: %s", exc)
            snapshot = Gauges(now=time.time())
        return Response(telemetry.metrics.render(snapshot), media_type=telemetry.metrics.content_type)

    return metrics


def _metrics_route(
    config: Config,
    telemetry: Telemetry,
    gauges: Callable[[], Awaitable[Gauges]] | None,
    token: Secret | None,
) -> list[BaseRoute]:
    if telemetry.metrics is None or gauges is None:
        return []
    _reserved(
        config, METRICS_PATH, "give it another path:, or serve /metrics on its own port (--metrics-port)"
    )
    return [Route(METRICS_PATH, metrics_endpoint(telemetry, gauges, token), methods=["GET", "HEAD"])]


class _Hooks:
    """The endpoint of every source path: read, verify, admit, record, answer; and report how it went."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], float],
        keyring: Keyring | None,
        telemetry: Telemetry,
        body_timeout: float,
    ) -> None:
        self.config, self.store, self.clock, self.keyring = config, store, clock, keyring
        self.telemetry, self.body_timeout = telemetry, body_timeout
        self.by_path = {source.path: source for source in config.sources.values()}

    async def endpoint(self, request: HTTPRequest) -> Response:
        started = time.perf_counter()
        remote = request.client.host if request.client else None
        path, method = request.scope["path"], request.method
        with self.telemetry.tracing.request(method, path, request.headers.get("traceparent"), remote) as span:
            response, delivery = await self.deliver(request, remote, span)
            seconds = time.perf_counter() - started
            self.telemetry.delivered(span, delivery, method=method, path=path, seconds=seconds, remote=remote)
        return response

    async def reject(
        self, source: Source, reason: str, detail: str, body: bytes, size: int, remote: str | None
    ) -> None:
        rejection = Rejection(
            source.name, reason, detail, self.clock(), remote, body[:REJECTION_BODY_PREFIX], size
        )
        try:
            await self.store.record_rejection(rejection)
        except StoreError:
            log.warning(
                "could not record a rejection for source %s (%s): store unavailable", source.name, reason
            )

    async def deliver(
        self, request: HTTPRequest, remote: str | None, span: Span
    ) -> tuple[Response, Delivery]:
        path = request.scope["path"]
        source = self.by_path.get(path)
        if source is None:
            detail = f"no webhook source is served at {path}"
            return _error(404, "unknown_source", detail), Delivery(404, "unknown_source")
        said = partial(Delivery, source=source.name, budget=source.sender_timeout)
        if request.method != "POST":
            response = _error(
                405, "method_not_allowed", "webhooks are delivered with POST", {"Allow": "POST"}
            )
            return response, said(405, "method_not_allowed")
        try:
            body = await _read_body(request, source.max_body, self.body_timeout)
        except _TooSlow as exc:
            detail = f"the body did not arrive within {self.body_timeout:g} s; send it at once"
            await self.reject(source, "slow_body", detail, exc.prefix, exc.size, remote)
            response = refused(_error(408, "slow_body", detail), request, self.body_timeout)
            return response, said(408, "rejected", reason="slow_body")
        except _TooLarge as exc:
            detail = f"the body is larger than this source's limit of {source.max_body} bytes"
            await self.reject(source, "too_large", detail, exc.prefix, exc.size, remote)
            response = refused(_error(413, "too_large", detail), request, self.body_timeout)
            return response, said(413, "too_large", reason="too_large")
        raw_query = request.scope.get("query_string", b"").decode("latin-1")
        inbound = Inbound(
            method="POST",
            url=_called_url(source, request, raw_query),
            headers=Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]),
            body=body,
            query=tuple(parse_qsl(raw_query, keep_blank_values=True)),
            remote_addr=remote,
        )
        try:
            verdict, now = await _verify(source, inbound, self.keyring, self.clock)
        except SignatureError as exc:
            failure = exc  # `exc` is unbound after the except block; the lambda runs inside _refuse
            response = await _refuse(
                source,
                failure,
                lambda: self.reject(source, failure.reason, failure.detail, body, len(body), remote),
            )
            outcome = "key_unavailable" if response.status_code == 503 else "rejected"
            return response, said(response.status_code, outcome, reason=failure.reason)
        payload = parse_payload(inbound.headers.get("content-type"), body)
        reply = respond(source.scheme, source.secrets, inbound, payload, key_index=verdict.key_index or 0)
        if reply is not None:  # a provider handshake (Slack url_verification, Zoom validation): not an event
            handshake = Response(reply.body, status_code=reply.status, media_type=reply.content_type)
            return handshake, said(reply.status, "handshake", verification=verdict.label)
        admission = admit(self.config, source, inbound, verdict, now, payload)
        event, runs = stamp(admission.event, admission.runs, span.get_span_context())
        said = partial(said, event_type=event.event_type, verification=verdict.label)
        try:
            recorded = await self.store.record(event, runs)
        except StoreError:
            log.error("store unavailable: answering 503 for a %s delivery", source.name)
            response = _error(
                503,
                "store_unavailable",
                "the event could not be stored; retry later",
                {"Retry-After": RETRY_AFTER},
            )
            return response, said(503, "store_unavailable", reason="store_unavailable")
        if recorded.duplicate and source.scheme.refuse_replays:
            detail = f"this {source.scheme.name} token was already used by event {recorded.event_id}"
            await self.reject(source, "replayed_token", detail, body, len(body), remote)
            return _error(401, "replayed_token", detail), said(401, "rejected", reason="replayed_token")
        outcome = "duplicate" if recorded.duplicate else "accepted"
        ack = _acknowledge(recorded)
        return ack, said(ack.status_code, outcome, event_id=recorded.event_id, runs=len(recorded.runs))


def create_app(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    keyring: Keyring | None = None,
    api: ASGIApp | None = None,
    telemetry: Telemetry | None = None,
    gauges: Callable[[], Awaitable[Gauges]] | None = None,
    metrics_token: Secret | None = None,
    body_timeout: float | None = None,
) -> Starlette:
    """Build the ASGI app. ``clock`` is injectable so tests can pin signature freshness; ``keyring`` fetches
    the keys of remote-key sources (plaid, pubsub, paypal, jwt). Whoever passes it closes it. ``api`` (the
    admin API, gateway/web/api.py) is mounted at /api when given; /metrics is served when ``telemetry`` has
    metrics and ``gauges`` reads the queue and executor gauges (behind ``metrics_token`` when given). A hook
    body still arriving ``body_timeout`` seconds (default BODY_TIMEOUT) after its head is refused with 408."""
    telemetry = telemetry or Telemetry.off()
    hook = _Hooks(config, store, clock, keyring, telemetry, body_timeout or BODY_TIMEOUT)

    async def healthz(request: HTTPRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: HTTPRequest) -> Response:
        try:
            await store.probe()
        except StoreError:
            return _error(
                503, "store_unavailable", "the database is not writable", {"Retry-After": RETRY_AFTER}
            )
        return JSONResponse({"status": "ready"})

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        *_metrics_route(config, telemetry, gauges, metrics_token),
        *_api_mount(config, api),
        Route("/{path:path}", hook.endpoint, methods=methods),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


def create_admin_app(api: ASGIApp) -> Starlette:
    """The admin API alone, at /api, for its own listener (--admin-host/--admin-port)."""
    return Starlette(routes=[Mount(API_PREFIX, app=api)], exception_handlers={HTTPException: http_error})


def create_metrics_app(
    telemetry: Telemetry, gauges: Callable[[], Awaitable[Gauges]], token: Secret | None = None
) -> Starlette:
    """/metrics alone, for its own listener (--metrics-port)."""
    endpoint = metrics_endpoint(telemetry, gauges, token)
    return Starlette(routes=[Route(METRICS_PATH, endpoint, methods=["GET", "HEAD"])])
