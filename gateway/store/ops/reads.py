"""A store's reads for people (interface.Reads): events, runs, attempts, rejections, jobs and counts, paged
by keyset.

Does I/O (the store's read connection, a db.Db). Pages are newest first and take a ``before`` cursor, the
``(time, id)`` of the last item of the previous page: a page never repeats or skips an item, however much
is written meanwhile. Bulk jobs walk oldest first with ``after``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from typing import Any

from gateway.errors import StoreError
from gateway.model import (
    CANCELED,
    FINAL_STATUSES,
    Attempt,
    Event,
    EventFilter,
    Job,
    Rejection,
    Run,
    RunFilter,
    TaskWorker,
)
from gateway.report import DeliveryCount, QueueDepth, TaskDurations
from gateway.store.interface import ANY_EVENT, ANY_RUN, COUNT_PARTS, Cursor
from gateway.store.ops.db import Db, Row
from gateway.store.rows import (
    attempt_from_row,
    event_from_row,
    filter_params,
    job_from_row,
    rejection_from_row,
    run_from_row,
    worker_from_row,
)

_TOP: Cursor = (math.inf, "")  # before everything
_BOTTOM: Cursor = (-math.inf, "")  # after nothing
# The statuses of runs that ended by executing: their durations are what a task's percentiles read.
FINISHED = sorted(FINAL_STATUSES - {CANCELED})


def _limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


# What an events read runs instead when its filter has ``text``: the events it names exactly, found by index
# seeks, rather than a walk of every event in the window.
_SEARCH = {
    "filter_events_newest": "search_events_newest",
    "filter_events_oldest": "search_events_oldest",
    "count_events": "count_search_events",
}


def _events(query: str, f: EventFilter) -> str:
    return query if f.text is None else _SEARCH[query]


def _window(since: float | None, until: float | None = None) -> dict[str, float]:
    return {"since": -math.inf if since is None else since, "until": math.inf if until is None else until}


async def read(conn: Db, query: str, params: dict[str, Any]) -> list[Row]:
    """The rows of the named query; StoreError when the database cannot answer."""
    try:
        return await conn.fetchall(query, params)
    except (*conn.errors, ValueError) as exc:  # type: ignore[misc]  # aiosqlite: ValueError once closed
        raise StoreError(f"could not read from the database: {exc}") from exc


async def read_workers(conn: Db, *, live_since: float) -> list[TaskWorker]:
    """The ``workers`` rows on ``conn``, newest first; lost if silent since ``live_since``."""
    rows = await read(conn, "list_workers", {})
    return [worker_from_row(row, live_since=live_since) for row in rows]


class Reads:
    """Reads on the store's own read connection (they never wait for the writer's transactions)."""

    def __init__(self, conn: Db) -> None:
        self.conn = conn

    async def _read(self, query: str, params: dict[str, Any]) -> list[Row]:
        return await read(self.conn, query, params)

    # -- events ---------------------------------------------------------------------------------------

    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._read("get_event", {"id": event_id})
        return event_from_row(rows[0]) if rows else None

    async def events_page(
        self, f: EventFilter = ANY_EVENT, *, before: Cursor | None = None, limit: int = 50
    ) -> list[Event]:
        """Newest first: at most ``limit`` events matching ``f`` that come before the cursor."""
        t, i = before or _TOP
        params = {**filter_params(f), "before_time": t, "before_id": i, "limit": _limit(limit)}
        return [event_from_row(row) for row in await self._read(_events("filter_events_newest", f), params)]

    async def events_after(
        self, f: EventFilter, *, after: Cursor | None, upto: float, limit: int
    ) -> list[Event]:
        """Oldest first: events matching ``f`` after the cursor, received at or before ``upto``."""
        t, i = after or _BOTTOM
        params = {**filter_params(f), "after_time": t, "after_id": i, "limit": _limit(limit)}
        params["until"] = min(params["until"], upto)
        return [event_from_row(row) for row in await self._read(_events("filter_events_oldest", f), params)]

    async def count_events(self, f: EventFilter = ANY_EVENT, *, upto: float = math.inf) -> int:
        params = filter_params(f)
        params["until"] = min(params["until"], upto)
        rows = await self._read(_events("count_events", f), params)
        n: int = rows[0][0]
        return n

    async def replays_of(self, event_id: str) -> list[tuple[str, float, str]]:
        """(id, received_at, status) of the events that replayed this one, oldest first."""
        rows = await self._read("replays_of_event", {"id": event_id})
        return [(row["id"], row["received_at"], row["status"]) for row in rows]

    # -- runs -----------------------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._read("get_run", {"id": run_id})
        return run_from_row(rows[0]) if rows else None

    async def runs_for_event(self, event_id: str) -> list[Run]:
        """The event's runs in the order they were recorded (its routes' order, then reruns)."""
        return [run_from_row(row) for row in await self._read("runs_for_event", {"event_id": event_id})]

    async def runs_for_events(self, event_ids: Sequence[str]) -> dict[str, list[Run]]:
        """Every listed event's runs (an event without runs is absent), each list in recorded order."""
        found: dict[str, list[Run]] = {}
        for row in await self._read("runs_for_events", {"ids": json.dumps(list(event_ids))}):
            run = run_from_row(row)
            found.setdefault(run.event_id, []).append(run)
        return found

    async def runs_page(
        self, f: RunFilter = ANY_RUN, *, before: Cursor | None = None, limit: int = 50
    ) -> list[Run]:
        t, i = before or _TOP
        params = {**filter_params(f), "before_time": t, "before_id": i, "limit": _limit(limit)}
        return [run_from_row(row) for row in await self._read("filter_runs_newest", params)]

    async def runs_after(self, f: RunFilter, *, after: Cursor | None, upto: float, limit: int) -> list[Run]:
        t, i = after or _BOTTOM
        params = {**filter_params(f), "after_time": t, "after_id": i, "limit": _limit(limit)}
        params["until"] = min(params["until"], upto)
        return [run_from_row(row) for row in await self._read("filter_runs_oldest", params)]

    async def count_runs(self, f: RunFilter = ANY_RUN, *, upto: float = math.inf) -> int:
        params = filter_params(f)
        params["until"] = min(params["until"], upto)
        rows = await self._read("count_runs", params)
        n: int = rows[0][0]
        return n

    async def reruns_of(self, run_id: str) -> list[tuple[str, float, str]]:
        """(id, created_at, status) of the runs that reran this one, oldest first."""
        rows = await self._read("reruns_of_run", {"id": run_id})
        return [(row["id"], row["created_at"], row["status"]) for row in rows]

    async def attempts_for_run(self, run_id: str) -> list[Attempt]:
        rows = await self._read("attempts_for_run", {"run_id": run_id})
        return [attempt_from_row(row) for row in rows]

    # -- rejections, jobs, counts ---------------------------------------------------------------------

    async def list_rejections(
        self,
        *,
        source: str | None = None,
        reason: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Rejection]:
        """Newest first, at most ``limit``, before the rejection id ``before``."""
        params = {
            "source": source,
            "reason": reason,
            "before_id": math.inf if before is None else before,
            "limit": _limit(limit),
            **_window(since, until),
        }
        return [rejection_from_row(row) for row in await self._read("list_rejections", params)]

    async def get_rejection(self, rejection_id: int) -> Rejection | None:
        """One rejection with its kept request, if it still has one."""
        rows = await self._read("get_rejection", {"id": rejection_id})
        return rejection_from_row(rows[0], with_request=True) if rows else None

    async def kept_rejections(
        self,
        *,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Rejection]:
        """Oldest first after the rejection id ``after``: rejections that still hold their request."""
        params = {"source": source, "after": after or 0, "limit": _limit(limit), **_window(since, until)}
        rows = await self._read("kept_rejections", params)
        return [rejection_from_row(row, with_request=True) for row in rows]

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read("get_job", {"id": job_id})
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self, *, status: str | None = None, before: Cursor | None = None, limit: int = 50
    ) -> list[Job]:
        t, i = before or _TOP
        params = {"status": status, "before_time": t, "before_id": i, "limit": _limit(limit)}
        return [job_from_row(row) for row in await self._read("list_jobs", params)]

    async def queue_depths(self) -> tuple[QueueDepth, ...]:
        """Runs waiting (queued or retrying) per queue, and the earliest time one of them became ready."""
        rows = await self._read("queue_depth", {})
        return tuple(QueueDepth(row["queue"], row["n"], row["oldest"]) for row in rows)

    async def workers(self, *, live_since: float) -> list[TaskWorker]:
        """Every registered worker, newest first, with how many runs it holds now."""
        return await read_workers(self.conn, live_since=live_since)

    async def waiting_by_task(self) -> list[tuple[str, str, int, float]]:
        """(task id, queue, runs waiting to start, oldest created_at) of every task with waiting runs."""
        rows = await self._read("waiting_by_task", {})
        return [(row["task_id"], row["queue"], row["waiting"], row["oldest"]) for row in rows]

    async def counts(
        self, *, since: float | None = None, parts: Collection[str] = COUNT_PARTS
    ) -> dict[str, Any]:
        """Events by source and status, runs by task and status, rejections by source and reason, and the
        waiting runs of each queue with the oldest one's ready time; only the ``parts`` asked for are read
        (each of the first three costs the rows in its window), the others are left empty."""
        unknown = set(parts) - set(COUNT_PARTS)
        if unknown:
            raise ValueError(f"counts: unknown parts {sorted(unknown)}; expected some of {COUNT_PARTS}")
        params = {"since": -math.inf if since is None else since}
        out: dict[str, Any] = {part: {} for part in COUNT_PARTS}
        for key, query, group in (
            ("events", "event_counts", "source"),
            ("runs", "run_counts", "task_id"),
            ("rejections", "rejection_counts", "source"),
        ):
            if key in parts:
                for row in await self._read(query, params):
                    out[key].setdefault(row[group], {})[row[1]] = row["n"]
        if "queues" in parts:
            for row in await self._read("queue_depth", {}):
                out["queues"][row["queue"]] = {"waiting": row["n"], "oldest_ready_at": row["oldest"]}
        return out

    async def runs_by_status(self, *, since: float, recent: float) -> dict[str, tuple[int, int]]:
        """Per status, the runs created since ``since`` and how many of them were created since ``recent``
        (a later time), in one walk of the window."""
        rows = await self._read("run_status_windows", {"since": since, "recent": recent})
        return {row["status"]: (row["n"], int(row["recent"] or 0)) for row in rows}

    async def deliveries_per_minute(self, *, since: float, until: float) -> list[DeliveryCount]:
        """Deliveries received from ``since`` to ``until`` by minute, source and outcome (routed, unrouted:
        original events, neither replays nor ``@api`` triggers; rejected: rejections), oldest minute first."""
        rows = await self._read("deliveries_per_minute", {"since": since, "until": until})
        return [DeliveryCount(float(row["minute"]), row["source"], row["outcome"], row["n"]) for row in rows]

    async def task_stats(self, *, since: float, per_task: int = 1000) -> list[TaskDurations]:
        """Per task, by task id: its runs created since ``since`` by status, and the durations (ascending) of
        the ``per_task`` of them that finished last (completed, failed, timed out, crashed)."""
        counts: dict[str, dict[str, int]] = {}
        for row in await self._read("run_counts", {"since": since}):
            counts.setdefault(row["task_id"], {})[row["status"]] = row["n"]
        durations: dict[str, list[float]] = {}
        params = {"since": since, "per_task": _limit(per_task), "statuses": json.dumps(FINISHED)}
        for row in await self._read("task_durations", params):
            durations.setdefault(row["task_id"], []).append(row["duration"])
        # Two statements, maybe two snapshots: a run created between them may show in either alone.
        tasks = sorted(counts.keys() | durations.keys())
        return [TaskDurations(task, counts.get(task, {}), tuple(durations.get(task, ()))) for task in tasks]
