"""What the dashboard's forms do — replay, rerun, cancel, bulk jobs — each a Service call answered with a
redirect to the record it made (POST, then GET: a reload never repeats it). I/O: the service's writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from gateway.errors import Invalid
from gateway.model import REPLAY, EventFilter, RunFilter
from gateway.records.service import Service
from gateway.routes.payload import strict_json
from gateway.web import params
from gateway.web.dashboard.forms import pick
from gateway.web.dashboard.pages import Pages, Seen
from gateway.web.dashboard.render import HEADERS

EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(EventFilter) if f.name != "include_replays")
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunFilter))


def see_other(path: str) -> Response:
    """303 to a dashboard path (always ours: built from ids, quoted)."""
    return RedirectResponse(path, status_code=303, headers=HEADERS)


def _id(value: str) -> str:
    return quote(value, safe="")


def bulk_request(form: Mapping[str, str], now: float) -> tuple[str, EventFilter | RunFilter]:
    """A bulk job's kind and filter from the bulk form, checked as the API checks its JSON body."""
    kind = form.get("kind", "")
    if kind == REPLAY:
        raw: dict[str, object] = dict(pick(form, EVENT_FIELDS))
        raw["include_replays"] = form.get("include_replays") == "on"
    else:
        raw = dict(pick(form, RUN_FIELDS))
    return params.bulk_filter(kind, raw, now)


class Actions:
    """The POST handlers; each gets the checked form (its CSRF token and scope already checked)."""

    def __init__(self, service: Service, pages: Pages, on_job: Callable[[], None] | None) -> None:
        self.service = service
        self.pages = pages
        self.on_job = on_job

    async def replay(self, seen: Seen, form: Mapping[str, str]) -> Response:
        outcome = await self.service.replay(seen.request.path_params["id"])
        return see_other(f"/ui/events/{_id(outcome.event_id)}")

    async def rerun(self, seen: Seen, form: Mapping[str, str]) -> Response:
        run_id = seen.request.path_params["id"]
        if form.get("input") == "edited":
            text = form.get("payload", "")
            try:
                payload = strict_json(text.encode())
            except (ValueError, RecursionError) as exc:
                why = str(exc).split("\n")[0][:200] or "not valid JSON"
                # The edited text comes back in the editor, with what is wrong: nothing typed is lost.
                return await self.pages.rerun_form(
                    seen, text=text, problem=f"the input is not valid JSON: {why}"
                )
            run = await self.service.rerun(run_id, payload=payload, edited=True)
        else:
            run = await self.service.rerun(run_id)
        return see_other(f"/ui/runs/{_id(run.id)}")

    async def cancel(self, seen: Seen, form: Mapping[str, str]) -> Response:
        run = await self.service.cancel(seen.request.path_params["id"])
        return see_other(f"/ui/runs/{_id(run.id)}")

    async def bulk_preview(self, seen: Seen, form: Mapping[str, str]) -> Response:
        try:
            kind, f = bulk_request(form, seen.now)
        except Invalid as exc:
            return await self.pages.bulk(seen, problem=str(exc), given=form)
        preview = await self.service.bulk.preview(kind, f)
        given = {k: v for k, v in form.items() if k != "csrf" and v.strip()}
        # "24h" ago is a different instant when the job starts: the confirmation carries the instants counted.
        for name in ("since", "until"):
            value = getattr(f, name)
            if value is not None:
                given[name] = datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
        return self.pages.show(seen, "bulk_preview.html", "jobs", preview=preview, given=given, kind=kind)

    async def bulk_start(self, seen: Seen, form: Mapping[str, str]) -> Response:
        try:
            kind, f = bulk_request(form, seen.now)
        except Invalid as exc:
            return await self.pages.bulk(seen, problem=str(exc), given=form)
        job = await self.service.bulk.start_job(kind, f, requested_by=seen.viewer.principal.subject)
        if self.on_job is not None:
            self.on_job()
        return see_other(f"/ui/jobs/{_id(job.id)}")

    async def cancel_job(self, seen: Seen, form: Mapping[str, str]) -> Response:
        job = await self.service.bulk.cancel_job(seen.request.path_params["id"])
        return see_other(f"/ui/jobs/{_id(job.id)}")
