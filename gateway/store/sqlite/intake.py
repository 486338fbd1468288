"""The intake's writes: a delivery's event with its runs (deduplicated inside the transaction), rejections
(gateway/store/sqlite/rejections.py) and single rows (the readiness probe). Ops for the writer's batches; does
I/O inside their transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.model import DUPLICATE, STORED, Event, Recorded, Run
from gateway.store.rows import event_to_row, run_to_row
from gateway.store.sqlite.rejections import RejectionWrite, apply_rejections
from gateway.store.sqlite.runs import insert_runs
from gateway.store.sqlite.sql import QUERIES


@dataclass(slots=True)
class EventWrite:
    """One delivery: its event and runs, unless its dedupe key is stored already (``result.duplicate``)."""

    event: Event
    runs: tuple[Run, ...]
    event_row: dict[str, Any]
    run_rows: list[dict[str, Any]]
    done: asyncio.Future[Recorded]
    result: Recorded | None = None
    error: Exception | None = None
    dedupe_window: float | None = None  # seconds its source's dedupe keys hold (None: as long as the event)
    recovers: int | None = None  # the rejection it recovers, marked in the same transaction

    @property
    def created(self) -> tuple[Run, ...]:
        """The runs this write put on disk (none for a duplicate), once its batch committed."""
        return () if self.result is None or self.result.duplicate else self.runs


@dataclass(slots=True)
class RowWrite:
    """One row of ``query`` (a name in QUERIES): a meta key."""

    query: str
    row: dict[str, Any]
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


def event_write(
    event: Event,
    runs: Sequence[Run],
    loop: asyncio.AbstractEventLoop,
    *,
    dedupe_window: float | None = None,
    recovers: int | None = None,
) -> EventWrite:
    """Encode here, in the caller's task, so a bad value fails only its caller, not the batch."""
    for run in runs:
        if run.event_id != event.id:
            raise ValueError(f"run {run.id} has event_id {run.event_id!r}, expected {event.id!r}")
    rows = [run_to_row(r, event) for r in runs]
    done = loop.create_future()
    write = EventWrite(event, tuple(runs), event_to_row(event), rows, done)
    write.dedupe_window, write.recovers = dedupe_window, recovers
    return write


async def apply_intake(
    conn: aiosqlite.Connection,
    events: Sequence[EventWrite],
    rows: Sequence[RowWrite],
    rejections: Sequence[RejectionWrite] = (),
) -> None:
    """A batch's deliveries, rejections and rows, in a constant number of statements whatever its size. Dedupe
    is decided here, inside the transaction, against stored events and against earlier writes of the same
    batch; so is whether a rejection being recovered was recovered already (then nothing is stored).

    A stored key older than its write's dedupe window is retired from the older event in this transaction
    (moved to retired_key, out of the UNIQUE (source, dedupe_key) index), and the newer event takes it."""
    known = await _known_keys(conn, events)
    recovered = await _recovered(conn, events)
    fresh: set[str] = set()  # this batch's new events: never retired, they are not on disk yet
    retired: list[str] = []
    event_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    marks: list[dict[str, Any]] = []
    for w in events:
        w.result = _decide(w, known, recovered, fresh, retired)
        if not w.result.duplicate:
            event_rows.append(w.event_row)
            run_rows.extend(w.run_rows)
        if w.recovers is not None:
            recovered[w.recovers] = w.result.event_id
            recovery = DUPLICATE if w.result.duplicate else STORED
            at = w.event.received_at  # when it was recovered: admit() stamps the event with that time
            marks.append({"id": w.recovers, "event_id": w.result.event_id, "recovery": recovery, "now": at})
    if retired:
        await conn.execute(QUERIES["retire_dedupe_keys"], {"ids": json.dumps(retired)})
    if event_rows:
        await conn.executemany(QUERIES["insert_event"], event_rows)
    if run_rows:
        await insert_runs(conn, run_rows)
    if marks:
        await conn.executemany(QUERIES["mark_recovered"], marks)
    if rejections:
        await apply_rejections(conn, rejections)
    by_query: dict[str, list[dict[str, Any]]] = {}  # probes
    for write in rows:
        by_query.setdefault(write.query, []).append(write.row)
    for query, query_rows in by_query.items():
        await conn.executemany(QUERIES[query], query_rows)


Known = dict[tuple[str, str], tuple[str, float]]  # (source, dedupe key) → the event holding it, received at


async def _known_keys(conn: aiosqlite.Connection, events: Sequence[EventWrite]) -> Known:
    """The stored events a batch's dedupe keys name, one lookup for the whole batch."""
    keys = [[w.event.source, w.event.dedupe_key] for w in events if w.event.dedupe_key is not None]
    if not keys:
        return {}
    found = await conn.execute_fetchall(QUERIES["find_dedupe_keys"], {"keys": json.dumps(keys)})
    return {(source, key): (event_id, at) for source, key, event_id, at in found}


def _decide(
    w: EventWrite, known: Known, recovered: dict[int, str], fresh: set[str], retired: list[str]
) -> Recorded:
    """One write's answer: a duplicate of what its rejection or its key names already, else stored (its key
    then names it for the rest of the batch; an older holder past the window goes on ``retired``)."""
    if w.recovers is not None and w.recovers in recovered:
        return Recorded(recovered[w.recovers], (), duplicate=True)
    event = w.event
    if event.dedupe_key is not None:
        key = (event.source, event.dedupe_key)
        if key in known:
            holder, at = known[key]
            window = w.dedupe_window
            if window is None or at >= event.received_at - window or holder in fresh:
                return Recorded(holder, (), duplicate=True)
            retired.append(holder)
        known[key] = (event.id, event.received_at)
    fresh.add(event.id)
    return Recorded(event.id, w.runs, duplicate=False)


async def _recovered(conn: aiosqlite.Connection, events: Sequence[EventWrite]) -> dict[int, str]:
    """Which of the rejections a batch recovers were recovered already, by an earlier transaction."""
    ids = [w.recovers for w in events if w.recovers is not None]
    if not ids:
        return {}
    found = await conn.execute_fetchall(QUERIES["recovered_rejections"], {"ids": json.dumps(ids)})
    return {rejection_id: event_id for rejection_id, event_id in found}
