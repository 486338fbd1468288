"""The intake's writes: a delivery's event with its runs (deduplicated inside the transaction), and single
rows (rejections, the readiness probe). Ops for the writer's batches; does I/O inside their transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.model import Event, Recorded, Run
from gateway.store.rows import event_to_row, run_to_row
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

    @property
    def created(self) -> tuple[Run, ...]:
        """The runs this write put on disk (none for a duplicate), once its batch committed."""
        return () if self.result is None or self.result.duplicate else self.runs


@dataclass(slots=True)
class RowWrite:
    """One row of ``query`` (a name in QUERIES): a rejection, a meta key."""

    query: str
    row: dict[str, Any]
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


def event_write(event: Event, runs: Sequence[Run], loop: asyncio.AbstractEventLoop) -> EventWrite:
    """Encode here, in the caller's task, so a bad value fails only its caller, not the batch."""
    for run in runs:
        if run.event_id != event.id:
            raise ValueError(f"run {run.id} has event_id {run.event_id!r}, expected {event.id!r}")
    rows = [run_to_row(r, event) for r in runs]
    return EventWrite(event, tuple(runs), event_to_row(event), rows, loop.create_future())


async def apply_intake(
    conn: aiosqlite.Connection, events: Sequence[EventWrite], rows: Sequence[RowWrite]
) -> None:
    """A batch's deliveries and rows, in a constant number of statements whatever its size. Dedupe is decided
    here, inside the transaction, against stored events and against earlier writes of the same batch."""
    keys = [[w.event.source, w.event.dedupe_key] for w in events if w.event.dedupe_key is not None]
    known: dict[tuple[str, str | None], str] = {}
    if keys:
        found = await conn.execute_fetchall(QUERIES["find_dedupe_keys"], {"keys": json.dumps(keys)})
        known = {(source, key): event_id for source, key, event_id in found}
    event_rows: list[dict[str, Any]] = []
    run_rows: list[dict[str, Any]] = []
    for w in events:
        key = (w.event.source, w.event.dedupe_key)
        if w.event.dedupe_key is not None:
            if key in known:
                w.result = Recorded(known[key], (), duplicate=True)
                continue
            known[key] = w.event.id
        event_rows.append(w.event_row)
        run_rows.extend(w.run_rows)
        w.result = Recorded(w.event.id, w.runs, duplicate=False)
    if event_rows:
        await conn.executemany(QUERIES["insert_event"], event_rows)
    if run_rows:
        await insert_runs(conn, run_rows)
    by_query: dict[str, list[dict[str, Any]]] = {}  # rejections, probes
    for write in rows:
        by_query.setdefault(write.query, []).append(write.row)
    for query, query_rows in by_query.items():
        await conn.executemany(QUERIES[query], query_rows)
