"""The dashboard's pages, each a read through gateway.records.service.Service rendered by a template. I/O:
the service's reads."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import Invalid
from gateway.model import (
    EVENT_STATUSES,
    FINAL_STATUSES,
    JOB_STATUSES,
    QUEUED,
    RETRYING,
    RUN_STATUSES,
    EventFilter,
    RunFilter,
)
from gateway.records.page import Page
from gateway.records.service import API_SOURCE, Service
from gateway.records.view import SIGNATURE_SHOWN, shown_headers
from gateway.web import params
from gateway.web.dashboard.forms import listing_query
from gateway.web.dashboard.render import Renderer
from gateway.web.dashboard.render import iso as _iso
from gateway.web.dashboard.session import Viewer

EVENT_QUERY = params.EVENT_PARAMS
RUN_QUERY = params.RUN_PARAMS
PAGE_SIZE = 50
DAY = 86400.0
CANCELABLE = (QUEUED, RETRYING)
F = TypeVar("F", EventFilter, RunFilter)


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as a page sees it: who asks, and when."""

    request: Request
    viewer: Viewer
    now: float


class Pages:
    """The GET pages. Each renders its template with the viewer and what the service read."""

    def __init__(self, service: Service, renderer: Renderer, acks: Callable[[], Mapping[str, Any]]) -> None:
        self.service = service
        self.renderer = renderer
        self.acks = acks

    def show(self, seen: Seen, template: str, section: str, status: int = 200, **context: Any) -> Response:
        base = {
            "viewer": seen.viewer,
            "now": seen.now,
            "section": section,
            "path": seen.request.url.path,
            "sources": self._sources(),
            "tasks": self._tasks(),
        }
        return self.renderer.page(template, {**base, **context}, status=status)

    def _sources(self) -> list[str]:
        try:
            return [*sorted(self.service.config.sources), API_SOURCE]
        except Invalid:
            return []

    def _tasks(self) -> list[str]:
        try:
            return sorted(self.service.config.tasks)
        except Invalid:
            return []

    async def _listing(
        self,
        seen: Seen,
        cls: type[F],
        names: Mapping[str, str],
        fetch: Callable[[F, str | None], Awaitable[Page[Any]]],
    ) -> dict[str, Any]:
        """A filtered, keyset-paged list's context: ``fetch(filter, cursor)``'s page, or None and the problem
        when the query is bad (a 400 page that says so); the filters shown again; whether it is the first
        page (only that one is live)."""
        q = listing_query(seen.request, (*names, "cursor"))
        problem, page = None, None
        try:
            page = await fetch(params.from_query(cls, q, names, seen.now), q.get("cursor"))
        except Invalid as exc:
            problem = str(exc)
        return {
            "status": 400 if problem else 200,
            "page": page,
            "problem": problem,
            "filters": {k: v for k, v in q.items() if k != "cursor"},
            "first": not q.get("cursor"),
        }

    # -- overview --------------------------------------------------------------------------------------

    async def overview(self, seen: Seen) -> Response:
        overview = await self.service.stats.overview(now=seen.now, acks=self.acks())
        return self.show(seen, "overview.html", "overview", overview=overview, final=FINAL_STATUSES)

    # -- events ----------------------------------------------------------------------------------------

    async def events(self, seen: Seen) -> Response:
        listing = await self._listing(
            seen, EventFilter, EVENT_QUERY, lambda f, c: self.service.events(f, cursor=c, limit=PAGE_SIZE)
        )
        page = listing["page"]
        runs = await self.service.runs_of([e.id for e in page.items]) if page else {}
        return self.show(
            seen,
            "events.html",
            "events",
            **listing,
            runs=runs,
            statuses=EVENT_STATUSES,
            run_statuses=RUN_STATUSES,
        )

    async def event(self, seen: Seen) -> Response:
        found = await self.service.event(seen.request.path_params["id"])
        raw = seen.request.query_params.get("raw") == "1"
        body = found.event.body.decode("utf-8", errors="replace") if raw else None
        return self.show(
            seen,
            "event.html",
            "events",
            found=found,
            e=found.event,
            raw=raw,
            body=body,
            headers=shown_headers(found.event, self.service.signature_headers()),
            signature_shown=SIGNATURE_SHOWN,
        )

    async def replay_confirm(self, seen: Seen) -> Response:
        event_id = seen.request.path_params["id"]
        found = await self.service.event(event_id)
        would = await self.service.replay_preview(event_id)
        return self.show(seen, "replay.html", "events", e=found.event, would=would)

    # -- runs ------------------------------------------------------------------------------------------

    async def runs(self, seen: Seen) -> Response:
        listing = await self._listing(
            seen, RunFilter, RUN_QUERY, lambda f, c: self.service.runs(f, cursor=c, limit=PAGE_SIZE)
        )
        return self.show(seen, "runs.html", "runs", **listing, statuses=RUN_STATUSES)

    async def run(self, seen: Seen) -> Response:
        found = await self.service.run(seen.request.path_params["id"])
        run = found.run
        end = run.finished_at or seen.now
        return self.show(
            seen,
            "run.html",
            "runs",
            found=found,
            run=run,
            span=(run.created_at, max(end, run.created_at + 0.001)),
            done=run.status in FINAL_STATUSES,
            cancelable=run.status in CANCELABLE,
        )

    async def rerun_form(
        self, seen: Seen, *, text: str | None = None, problem: str | None = None
    ) -> Response:
        found = await self.service.run(seen.request.path_params["id"])
        return self.show(
            seen,
            "rerun.html",
            "runs",
            status=400 if problem else 200,
            run=found.run,
            text=text,
            problem=problem,
        )

    # -- bulk jobs -------------------------------------------------------------------------------------

    async def bulk(
        self, seen: Seen, *, problem: str | None = None, given: Mapping[str, str] = {}
    ) -> Response:
        return self.show(
            seen,
            "bulk.html",
            "jobs",
            status=400 if problem else 200,
            problem=problem,
            given=given,
            statuses=EVENT_STATUSES,
            run_statuses=RUN_STATUSES,
        )

    async def jobs(self, seen: Seen) -> Response:
        q = listing_query(seen.request, ("status", "cursor"))
        status = params.choice("status", q["status"], JOB_STATUSES) if "status" in q else None
        page = await self.service.bulk.jobs(status=status, cursor=q.get("cursor"), limit=PAGE_SIZE)
        return self.show(
            seen, "jobs.html", "jobs", page=page, filters={"status": status}, first=not q.get("cursor")
        )

    async def job(self, seen: Seen) -> Response:
        job = await self.service.bulk.job(seen.request.path_params["id"])
        fields = [
            (f.name, getattr(job.filter, f.name))
            for f in dataclasses.fields(job.filter)
            if getattr(job.filter, f.name) is not None
        ]
        shown = [(name, _iso(v) if name in ("since", "until") else v) for name, v in fields]
        return self.show(seen, "job.html", "jobs", job=job, done=job.status != "running", filter_fields=shown)

    # -- rejections, tasks, workers ----------------------------------------------------------------------

    async def rejections(self, seen: Seen) -> Response:
        q = listing_query(seen.request, ("source", "reason", "since", "until", "cursor"))
        window = params.from_query(EventFilter, q, {"since": "since", "until": "until"}, seen.now)
        page = await self.service.rejections(
            source=q.get("source"),
            reason=q.get("reason"),
            since=window.since,
            until=window.until,
            cursor=q.get("cursor"),
            limit=PAGE_SIZE,
        )
        counted_since = window.since if window.since is not None else seen.now - DAY
        reasons = await self.service.stats.rejection_reasons(since=counted_since, now=seen.now)
        filters = {k: v for k, v in q.items() if k != "cursor"}
        return self.show(
            seen,
            "rejections.html",
            "rejections",
            page=page,
            reasons=reasons,
            counted_since=counted_since,
            filters=filters,
            first=not q.get("cursor"),
        )

    async def task_stats(self, seen: Seen) -> Response:
        q = listing_query(seen.request, ("since",))
        since = params.time("since", q["since"], seen.now) if "since" in q else seen.now - DAY
        stats = await self.service.stats.tasks(since=since, now=seen.now)
        return self.show(seen, "tasks.html", "tasks", stats=stats, since=since, filters=q)

    async def workers(self, seen: Seen) -> Response:
        workers = await self.service.stats.workers(now=seen.now)
        return self.show(seen, "workers.html", "workers", workers=workers)
