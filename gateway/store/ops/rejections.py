"""Rejected deliveries on disk: each row, and the bound on the requests kept for replay. Ops for the writer's
batches; does I/O inside their transaction.

A source keeps at most ``keep`` bytes of rejected requests (model.RejectionKeep). A batch that takes it past
that drops the source's oldest kept requests first, but no more than ``turnover`` bytes of them an hour; once
that is spent, the newest requests are the ones not kept. So garbage never fills the disk, and a flood of
forgeries replaces at most a quarter of what a source keeps each hour, never all of it at once. The rows stay,
saying why they hold no request. Totals per source are kept by triggers (migration 0006), so prunes count too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.model import EVICTED, NO_ROOM, RejectionKeep
from gateway.store.ops.db import Db
from gateway.store.rows import NO_REQUEST

HOUR = 3600.0  # the turnover's window
_PAGE = 512  # kept requests read at a time while choosing which to drop


@dataclass(slots=True)
class RejectionWrite:
    """One rejection row, and its source's cap on kept requests (None: keep none)."""

    row: dict[str, Any]
    keep: RejectionKeep | None
    done: asyncio.Future[None]
    result: None = None
    error: Exception | None = None


@dataclass(slots=True)
class _Room:
    """What one source can still take in this batch: its free bytes, plus what this hour's turnover may
    still drop of its older requests. An estimate that spares writing a request sure to be dropped at once
    (a flood of large forgeries); _within_cap then enforces the cap exactly."""

    keep: RejectionKeep
    left: int
    latest: float  # the batch's latest rejection of the source: the turnover's clock

    def takes(self, size: int, at: float) -> bool:
        self.latest = max(self.latest, at)
        if not 0 < size <= min(self.left, self.keep.keep):
            return False
        self.left -= size
        return True


async def _room(conn: Db, source: str, keep: RejectionKeep, now: float) -> _Room:
    found = list(await conn.fetchall("rejection_space", {"source": source}))
    kept, window_start, dropped = found[0] if found else (0, 0.0, 0)
    if now - window_start >= HOUR:
        dropped = 0
    return _Room(keep, keep.keep - kept + min(kept, max(0, keep.turnover - dropped)), now)


async def apply_rejections(conn: Db, writes: Sequence[RejectionWrite]) -> None:
    """Insert a batch's rejections, then bring each source that keeps requests back under its cap."""
    rows: list[dict[str, Any]] = []
    rooms: dict[str, _Room] = {}
    for write in writes:
        row, keep, at = write.row, write.keep, write.row["received_at"]
        if row["kept_bytes"] > 0:
            room = rooms.get(row["source"])
            if room is None and keep is not None:
                room = rooms[row["source"]] = await _room(conn, row["source"], keep, at)
            if room is None or not room.takes(row["kept_bytes"], at):
                row = {**row, **NO_REQUEST, "dropped": NO_ROOM, "dropped_at": at}
        rows.append(row)
    await conn.executemany("insert_rejection", rows)
    for source, room in rooms.items():
        await _within_cap(conn, source, room.keep, room.latest)


async def _within_cap(conn: Db, source: str, keep: RejectionKeep, now: float) -> None:
    found = list(await conn.fetchall("rejection_space", {"source": source}))
    if not found:  # the source has never kept a request
        return
    [(kept, window_start, dropped)] = found
    excess = kept - keep.keep
    if excess <= 0:
        return
    if now - window_start >= HOUR:
        window_start, dropped = now, 0
    evicted, freed = await _pick(conn, source, excess, budget=keep.turnover - dropped, oldest=True)
    refused, _ = await _pick(conn, source, excess - freed, budget=None, oldest=False, skip=set(evicted))
    for why, ids in ((EVICTED, evicted), (NO_ROOM, refused)):
        if ids:
            await conn.execute("drop_requests", {"ids": json.dumps(ids), "why": why, "now": now})
    turnover = {"source": source, "window_start": window_start, "dropped": dropped + freed}
    await conn.execute("turn_over", turnover)


async def _pick(
    conn: Db,
    source: str,
    excess: int,
    *,
    budget: int | None,
    oldest: bool,
    skip: Collection[int] = (),
) -> tuple[list[int], int]:
    """Kept requests of ``source`` to drop, oldest (or newest) first, until ``excess`` bytes are freed or, for
    the oldest, this hour's ``budget`` is spent (the last one may pass it); their ids and the bytes freed."""
    chosen: list[int] = []
    freed = 0
    query, bound = ("kept_oldest", "after") if oldest else ("kept_newest", "before")
    cursor = 0 if oldest else 2**63 - 1
    while freed < excess and (budget is None or freed < budget):
        params = {"source": source, bound: cursor, "limit": _PAGE}
        page = list(await conn.fetchall(query, params))
        for rejection_id, size in page:
            if freed >= excess or (budget is not None and freed >= budget):
                break
            if rejection_id not in skip:
                chosen.append(rejection_id)
                freed += size
        if len(page) < _PAGE:
            break
        cursor = page[-1][0]
    return chosen, freed
