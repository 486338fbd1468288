"""The dashboard as an ASGI app with relative routes, mounted at /ui: sign-in, the pages, the forms and the
two static files. Every page and action needs a session; an action also its scope and its CSRF token.
I/O: HTTP in; the service's reads and writes; the packaged static files, read once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import AccessDenied, Conflict, GatewayError, Invalid, NotFound, StoreError, TooLarge
from gateway.records.service import Service
from gateway.web.auth import AdminKey
from gateway.web.dashboard.actions import Actions, see_other
from gateway.web.dashboard.forms import read_form
from gateway.web.dashboard.pages import Pages, Seen
from gateway.web.dashboard.render import HEADERS, Renderer
from gateway.web.dashboard.session import LOGIN_COOKIE, LOGIN_TTL, Sessions, Viewer, secure
from gateway.web.responses import refused

log = logging.getLogger("gateway.dashboard")
PREFIX = "/ui"
STATIC = {"dashboard.css": "text/css; charset=utf-8", "dashboard.js": "text/javascript; charset=utf-8"}
Page = Callable[[Seen], Awaitable[Response]]
Action = Callable[[Seen, Mapping[str, str]], Awaitable[Response]]
_STATUS = {NotFound: 404, Conflict: 409, Invalid: 400, TooLarge: 413}
_TITLES = {404: "Not found", 409: "Not possible now", 413: "Too large"}


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path only (never another host: no open redirect)."""
    if not value or (not value.startswith(PREFIX + "/") and value != PREFIX):
        return PREFIX + "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value or value.startswith("//"):
        return PREFIX + "/"
    return value


class Dashboard:
    """Sessions, guards and the route table around Pages and Actions."""

    def __init__(
        self,
        service: Service,
        key: AdminKey,
        *,
        clock: Callable[[], float],
        on_job: Callable[[], None] | None,
        trace_url: str | None,
        acks: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.clock = clock
        self.sessions = Sessions(key)
        self.renderer = Renderer(trace_url=trace_url)
        self.pages = Pages(service, self.renderer, acks)
        self.actions = Actions(service, self.pages, on_job)
        self.static = {
            name: resources.files("gateway.web.dashboard").joinpath("static", name).read_bytes()
            for name in STATIC
        }

    # -- answers ---------------------------------------------------------------------------------------

    def problem(self, status: int, title: str, detail: str, viewer: Viewer | None = None) -> Response:
        context = {"viewer": viewer, "title": title, "detail": detail, "section": "", "code": status}
        return self.renderer.page("problem.html", context, status=status)

    def _failure(self, exc: GatewayError, viewer: Viewer | None) -> Response:
        if isinstance(exc, AccessDenied):
            return self.problem(exc.status, "Not allowed", exc.detail, viewer)
        if isinstance(exc, StoreError):
            log.error("store unavailable: answering 503 to a dashboard page (%s)", type(exc).__name__)
            return self.problem(
                503, "Database unavailable", "the database could not answer; retry later", viewer
            )
        for kind, status in _STATUS.items():
            if isinstance(exc, kind):
                return self.problem(status, _TITLES.get(status, "Not accepted"), str(exc), viewer)
        raise exc

    def _to_login(self, request: Request, reason: str | None = None) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        where = f"{PREFIX}/login?next={quote(target, safe='')}" + (f"&why={reason}" if reason else "")
        response = see_other(where)
        if reason:  # the token in the cookie is no good any more: forget it
            response.delete_cookie(self.sessions.cookie_name(self._secure(request)), path="/")
        return response

    def _secure(self, request: Request) -> bool:
        return secure(request.url.scheme, request.headers)

    def _viewer(self, request: Request) -> Viewer | None:
        """The session's viewer; None without a cookie; AccessDenied for one whose token is no good."""
        token = self.sessions.token_of(request.cookies, self._secure(request))
        if token is None:
            return None
        return self.sessions.viewer(token, now=self.clock())

    # -- guards ----------------------------------------------------------------------------------------

    def page(self, handler: Page) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                viewer = self._viewer(request)
            except AccessDenied as exc:
                return self._to_login(request, "expired" if exc.reason == "expired_token" else "invalid")
            if viewer is None:
                return self._to_login(request)
            try:
                return await handler(Seen(request, viewer, self.clock()))
            except GatewayError as exc:
                return self._failure(exc, viewer)

        return endpoint

    def action(self, scope: str, handler: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            viewer: Viewer | None = None
            try:
                viewer = self._viewer(request)
                if viewer is None:
                    raise AccessDenied(401, "missing_token", "sign in first: this form needs a session")
                form = await read_form(request)
                if not self.sessions.check(viewer, form.get("csrf")):
                    raise AccessDenied(
                        403,
                        "bad_csrf",
                        "the form's CSRF token is missing or not this session's (you may have signed in "
                        "again since the page was made): reload the page and submit again",
                    )
                if scope not in viewer.principal.scopes:
                    raise AccessDenied(
                        403, "missing_scope", f"your token has no {scope} scope; this needs it"
                    )
                return await handler(Seen(request, viewer, self.clock()), form)
            except TooLarge as exc:
                return refused(self.problem(413, "Too large", str(exc)), request)
            except GatewayError as exc:
                return self._failure(exc, viewer)

        return endpoint

    # -- signing in and out ----------------------------------------------------------------------------

    def _login_page(self, request: Request, problem: str | None = None, status: int = 200) -> Response:
        nonce, csrf = self.sessions.login_nonce()
        why = request.query_params.get("why")
        notice = {"expired": "Your token expired: sign in with a new one.", "invalid": "Sign in again."}.get(
            why or ""
        )
        context = {
            "viewer": None,
            "section": "login",
            "csrf": csrf,
            "next": _safe_next(request.query_params.get("next")),
            "problem": problem,
            "notice": notice,
        }
        response = self.renderer.page("login.html", context, status=status)
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=LOGIN_TTL,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        return response

    async def login_form(self, request: Request) -> Response:
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        try:
            form = await read_form(request)
        except TooLarge as exc:
            return refused(self.problem(413, "Too large", str(exc)), request)
        except Invalid as exc:
            return self._login_page(request, str(exc), 400)
        if not self.sessions.check_login(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return self._login_page(
                request, "the sign-in form expired or was not this browser's: try again", 403
            )
        now = self.clock()
        try:
            viewer = self.sessions.sign_in(form.get("token", ""), now=now)
        except AccessDenied as exc:
            return self._login_page(request, exc.detail, exc.status)
        is_secure = self._secure(request)
        response = see_other(_safe_next(form.get("next")))
        response.set_cookie(
            self.sessions.cookie_name(is_secure),
            form.get("token", "").strip(),
            max_age=max(1, int(viewer.principal.expires_at - now)),  # the session ends with the token
            path="/",
            httponly=True,
            samesite="strict",
            secure=is_secure,
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        log.info("dashboard: %s signed in", viewer.principal.subject)
        return response

    async def logout(self, seen: Seen, form: Mapping[str, str]) -> Response:
        response = see_other(f"{PREFIX}/login?why=signed-out")
        response.delete_cookie(self.sessions.cookie_name(self._secure(seen.request)), path="/")
        return response

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return self.problem(404, "Not found", "no such file")
        headers = {**HEADERS, "Cache-Control": "public, max-age=300"}  # no data in them; no session needed
        return Response(self.static[name], media_type=STATIC[name], headers=headers)

    # -- the table -------------------------------------------------------------------------------------

    def app(self) -> Starlette:
        p, a = self.pages, self.actions
        get = [
            ("/", p.overview),
            ("/events", p.events),
            ("/events/{id}", p.event),
            ("/events/{id}/replay", p.replay_confirm),
            ("/runs", p.runs),
            ("/runs/{id}", p.run),
            ("/runs/{id}/rerun", p.rerun_form),
            ("/bulk", p.bulk),
            ("/jobs", p.jobs),
            ("/jobs/{id}", p.job),
            ("/rejections", p.rejections),
            ("/tasks", p.task_stats),
            ("/workers", p.workers),
        ]
        post = [
            ("/events/{id}/replay", "replay", a.replay),
            ("/runs/{id}/rerun", "replay", a.rerun),
            ("/runs/{id}/cancel", "replay", a.cancel),
            ("/bulk/preview", "replay", a.bulk_preview),
            ("/bulk", "replay", a.bulk_start),
            ("/jobs/{id}/cancel", "replay", a.cancel_job),
            ("/logout", "read", self.logout),
        ]
        routes = [
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/static/{name}", self.asset, methods=["GET"]),
            *[Route(path, self.page(handler), methods=["GET"]) for path, handler in get],
            *[Route(path, self.action(scope, handler), methods=["POST"]) for path, scope, handler in post],
        ]
        app = Starlette(routes=routes, exception_handlers={HTTPException: self._http_error})
        app.router.redirect_slashes = False
        return app

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        title = {404: "Not found", 405: "Method not allowed"}.get(status, "Error")
        return self.problem(status, title, f"{request.method} {request.url.path} is not a dashboard page")


def create_dashboard(
    service: Service,
    key: AdminKey,
    *,
    clock: Callable[[], float] = time.time,
    on_job: Callable[[], None] | None = None,
    trace_url: str | None = None,
    acks: Callable[[], Mapping[str, Any]] = dict,
) -> Starlette:
    """The dashboard, to mount at /ui beside the admin API (it signs in with the same tokens). ``acks()``
    gives the in-process acks within each sender's budget (Metrics.acks); ``trace_url`` a trace UI's URL
    with ``{trace_id}`` in it; ``on_job()`` wakes the job worker after a bulk job is recorded."""
    return Dashboard(service, key, clock=clock, on_job=on_job, trace_url=trace_url, acks=acks).app()
