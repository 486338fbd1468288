"""The intake's writes: a delivery's event with its runs (deduplicated inside the transaction), rejections
(rejections.py) and single rows (the readiness probe). Ops for the writer's batches; does
I/O inside their transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import DUPLICATE, STORED, Event, Recorded, Run
from gateway.store.ops.db import DataRefused, Db
from gateway.store.ops.rejections import RejectionWrite, apply_rejections
from gateway.store.ops.runs import insert_runs
from gateway.store.rows import event_to_row, run_to_row

log = logging.getLogger("gateway.store")


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
    """One row of ``query`` (a named statement): a meta key."""

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
    conn: Db,
    events: Sequence[EventWrite],
    rows: Sequence[RowWrite],
    rejections: Sequence[RejectionWrite] = (),
) -> None:
    """A batch's deliveries, rejections and rows, in a constant number of statements whatever its size. Dedupe
    is decided here, inside the transaction, against stored events and against earlier writes of the same
    batch; so is whether a rejection being recovered was recovered already (then nothing is stored).

    A stored key older than its write's dedupe window is retired from the older event in this transaction
    (moved to retired_key, out of the UNIQUE (source, dedupe_key) index), and the newer event takes it. The
    index has the last word: a delivery whose key it holds although the lookup missed it is a duplicate of
    the event holding it (_conflicts), never an error that rolls the batch back."""
    known = await _known_keys(conn, events)
    recovered = await _recovered(conn, events)
    fresh: set[str] = set()  # this batch's new events: never retired, they are not on disk yet
    retired: list[str] = []
    for w in events:
        w.result = _decide(w, known, recovered, fresh, retired)
        if w.recovers is not None:
            recovered[w.recovers] = w.result.event_id
    if retired:
        await conn.execute("retire_dedupe_keys", {"ids": json.dumps(retired)})
    stored = [w for w in events if _created(w)]
    if stored:
        inserted = await conn.executemany("insert_event", [w.event_row for w in stored])
        if inserted != len(stored):
            await _conflicts(conn, events, stored)
    run_rows = [row for w in events if _created(w) for row in w.run_rows]
    if run_rows:
        await insert_runs(conn, run_rows)
    marks = [_mark(w) for w in events if w.recovers is not None]
    if marks:
        await conn.executemany("mark_recovered", marks)
    if rejections:
        await apply_rejections(conn, rejections)
    by_query: dict[str, list[dict[str, Any]]] = {}  # probes
    for write in rows:
        by_query.setdefault(write.query, []).append(write.row)
    for query, query_rows in by_query.items():
        await conn.executemany(query, query_rows)


def _created(w: EventWrite) -> bool:
    return w.result is not None and not w.result.duplicate


def _mark(w: EventWrite) -> dict[str, Any]:
    """The recovery mark of the rejection ``w`` recovers, as the batch decided it."""
    assert w.result is not None
    recovery = DUPLICATE if w.result.duplicate else STORED
    at = w.event.received_at  # when it was recovered: admit() stamps the event with that time
    return {"id": w.recovers, "event_id": w.result.event_id, "recovery": recovery, "now": at}


Known = dict[tuple[str, str], tuple[str, float]]  # (source, dedupe key) → the event holding it, received at


async def _known_keys(conn: Db, events: Sequence[EventWrite]) -> Known:
    """The stored events a batch's dedupe keys name, one lookup for the whole batch. The keys are bound as
    values into a scratch table, never passed as JSON text: each compares byte for byte as it is stored,
    U+0000 and all."""
    keys = [
        {"source": w.event.source, "dedupe_key": w.event.dedupe_key}
        for w in events
        if w.event.dedupe_key is not None
    ]
    if not keys:
        return {}
    await conn.execute("clear_dedupe_keys")
    await conn.executemany("note_dedupe_key", keys)
    found = await conn.fetchall("find_dedupe_keys")
    return {(source, key): (event_id, at) for source, key, event_id, at in found}


async def _conflicts(conn: Db, events: Sequence[EventWrite], stored: Sequence[EventWrite]) -> None:
    """Some of ``stored`` were not inserted: the UNIQUE (source, dedupe_key) index holds their keys, which
    the batch's lookup missed. Each is answered as a duplicate of the event holding its key, and so is every
    write of the batch that was answered as a duplicate of it. Runs only when an insert came short: one
    statement per such write."""
    ids = [w.event.id for w in stored]
    rows = await conn.fetchall("stored_event_ids", {"ids": json.dumps(ids)})
    on_disk = {event_id for (event_id,) in rows}
    moved: dict[str, str] = {}  # the id a write was to store → the event that holds its key
    for w in stored:
        if w.event.id in on_disk:
            continue
        source, key = w.event.source, w.event.dedupe_key
        params = {"source": source, "dedupe_key": key}  # by itself, not through the lookup that missed
        found = list(await conn.fetchall("dedupe_key_holder", params))
        if key is None or not found:  # not a dedupe key conflict after all: fail as the database would
            raise DataRefused(f"event {w.event.id} of source {source!r} was not inserted")
        moved[w.event.id] = holder = found[0][0]
        log.warning(
            "store: a %s delivery's dedupe key is held by event %s, which the batch's lookup missed; "
            "answered as a duplicate of it",
            source,
            holder,
        )
    for w in events:
        if w.result is not None and w.result.event_id in moved:
            w.result = Recorded(moved[w.result.event_id], (), duplicate=True)


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


async def _recovered(conn: Db, events: Sequence[EventWrite]) -> dict[int, str]:
    """Which of the rejections a batch recovers were recovered already, by an earlier transaction."""
    ids = [w.recovers for w in events if w.recovers is not None]
    if not ids:
        return {}
    found = await conn.fetchall("recovered_rejections", {"ids": json.dumps(ids)})
    return {rejection_id: event_id for rejection_id, event_id in found}
