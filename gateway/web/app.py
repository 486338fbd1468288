"""The ASGI apps the server serves: the hooks with /healthz, /readyz and, beside them or on their own
listeners, the admin API at /api and Prometheus' /metrics. I/O: HTTP in; the store's probe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import AccessDenied, Invalid, StoreError
from gateway.keys.keyring import Keyring
from gateway.model import Secret
from gateway.report import Gauges
from gateway.routes.load import Config
from gateway.store.interface import Store
from gateway.telemetry.hub import Telemetry
from gateway.web.auth import check_bearer
from gateway.web.budget import BodyBudget
from gateway.web.hooks import Hooks
from gateway.web.listen import HEAD_LIMIT
from gateway.web.responses import error, http_error, refused

log = logging.getLogger("gateway.app")
App = ASGIApp  # what create_app mounts at /api and serves; the server passes it along without knowing HTTP
API_PREFIX = "/api"
UI_PREFIX = "/ui"
METRICS_PATH = "/metrics"


def create_app(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    keyring: Keyring | None = None,
    api: ASGIApp | None = None,
    dashboard: ASGIApp | None = None,
    telemetry: Telemetry | None = None,
    gauges: Callable[[], Awaitable[Gauges]] | None = None,
    metrics_token: Secret | None = None,
    body_timeout: float | None = None,
    budget: BodyBudget | None = None,
) -> ASGIApp:
    """Build the ASGI app. ``clock`` is injectable so tests can pin signature freshness; ``keyring`` fetches
    the keys of remote-key sources (plaid, pubsub, paypal, jwt). Whoever passes it closes it. ``api`` (the
    admin API, gateway/web/api.py) is mounted at /api when given, ``dashboard`` (gateway/web/dashboard) at
    /ui, with ``GET /`` sent there unless a source is served at /; /metrics is served when ``telemetry`` has
    metrics and ``gauges`` reads the queue and executor gauges (behind ``metrics_token`` when given). A hook
    body still arriving ``body_timeout`` seconds (default hooks.BODY_TIMEOUT) after its head is refused with
    408; ``budget`` bounds the bytes of hook bodies held at once (default web/budget.py's)."""
    telemetry = telemetry or Telemetry.off()
    hooks = Hooks(config, store, clock, keyring, telemetry, body_timeout, budget)

    async def healthz(request: HTTPRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: HTTPRequest) -> Response:
        try:
            await store.probe()
        except StoreError as exc:  # why: a deleted, replaced or damaged file is fixed by hand, not by waiting
            return error("store_unavailable", f"the database is not writable: {exc}")
        return JSONResponse({"status": "ready"})

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        *_metrics_route(config, telemetry, gauges, metrics_token),
        *_api_mount(config, api),
        *_ui_mount(config, dashboard),
        Route("/{path:path}", hooks.endpoint, methods=methods),
    ]
    return _bounded(Starlette(routes=routes, exception_handlers={HTTPException: http_error}))


def create_admin_app(api: ASGIApp, dashboard: ASGIApp | None = None) -> ASGIApp:
    """The admin API at /api, and the dashboard at /ui when given, for their own listener
    (--admin-host/--admin-port)."""
    routes: list[BaseRoute] = [Mount(API_PREFIX, app=api)]
    if dashboard is not None:
        routes += [Route("/", _to_dashboard, methods=["GET", "HEAD"]), Mount(UI_PREFIX, app=dashboard)]
    return _bounded(Starlette(routes=routes, exception_handlers={HTTPException: http_error}))


async def _to_dashboard(request: HTTPRequest) -> Response:
    return RedirectResponse(UI_PREFIX + "/", status_code=303)


def create_metrics_app(
    telemetry: Telemetry, gauges: Callable[[], Awaitable[Gauges]], token: Secret | None = None
) -> ASGIApp:
    """/metrics alone, for its own listener (--metrics-port)."""
    endpoint = metrics_endpoint(telemetry, gauges, token)
    return _bounded(Starlette(routes=[Route(METRICS_PATH, endpoint, methods=["GET", "HEAD"])]))


def _head_size(scope: Scope) -> int:
    """The bytes of a request's line and headers as they came in, give or take the spaces the server ate."""
    path = scope.get("raw_path") or scope["path"].encode()
    line = len(scope["method"]) + len(path) + len(scope["query_string"]) + 16  # "POST /p?q HTTP/1.1\r\n"
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


class _BoundedHead:
    """An app refusing a request whose head is past HEAD_LIMIT with 431, whatever the server let through:
    h11 (Hypercorn's) bounds a head only while it is incomplete, so one whose end came in a later read got
    by. Headers only: the body is never touched (it is read and dropped, as for every early refusal)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _head_size(scope) > HEAD_LIMIT:
            detail = f"the request line and headers are over {HEAD_LIMIT} bytes"
            response = error("head_too_large", detail, {"Connection": "close"})
            await refused(response, HTTPRequest(scope, receive))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _bounded(app: ASGIApp) -> ASGIApp:
    return _BoundedHead(app)


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
                return error(exc.reason, exc.detail, challenge, status=exc.status)
        try:
            snapshot = await gauges()
        except StoreError as exc:  # the counters still answer; the queue gauges wait for the store
            log.warning("/metrics: could not read the queues: %s", exc)
            snapshot = Gauges(now=time.time())
        return Response(telemetry.metrics.render(snapshot), media_type=telemetry.metrics.content_type)

    return metrics


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


NO_DASHBOARD = (
    "no dashboard is served here: it is served at /ui wherever the admin API is; set GATEWAY_ADMIN_SECRET "
    "(or --admin-public-key) and restart gateway serve to turn both on (with --admin-port they are on that "
    "port). Webhooks go to the paths of the sources in routes.yaml"
)


async def _no_dashboard(request: HTTPRequest) -> Response:
    return error("not_found", NO_DASHBOARD)


def _ui_mount(config: Config, dashboard: ASGIApp | None) -> list[BaseRoute]:
    """The dashboard at /ui (refused when a source's path is under /ui), and ``GET /`` sent there unless a
    source is served at / itself. Without a dashboard, a browser at / or /ui is told how to turn it on
    (where no source is served instead)."""
    if dashboard is None:
        paths = [source.path for source in config.sources.values()]
        told: list[BaseRoute] = []
        if "/" not in paths:
            told.append(Route("/", _no_dashboard, methods=["GET", "HEAD"]))
        if not any(p == UI_PREFIX or p.startswith(UI_PREFIX + "/") for p in paths):
            told += [
                Route(UI_PREFIX, _no_dashboard, methods=["GET", "HEAD"]),
                Route(UI_PREFIX + "/{path:path}", _no_dashboard, methods=["GET", "HEAD"]),
            ]
        return told
    _reserved(
        config, UI_PREFIX, "give it another path:, or serve the dashboard on its own port (--admin-port)"
    )
    routes: list[BaseRoute] = [Mount(UI_PREFIX, app=dashboard)]
    if not any(source.path == "/" for source in config.sources.values()):
        routes.insert(0, Route("/", _to_dashboard, methods=["GET", "HEAD"]))
    return routes


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
