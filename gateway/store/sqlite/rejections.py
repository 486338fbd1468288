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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from gateway.model import EVICTED, NO_ROOM, RejectionKeep
from gateway.store.rows import NO_REQUEST
from gateway.store.sqlite.sql import QUERIES

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


async def apply_rejections(conn: aiosqlite.Connection, writes: Sequence[RejectionWrite]) -> None:
    """Insert a batch's rejections, then bring each source that keeps requests back under its cap."""
    rows: list[dict[str, Any]] = []
    caps: dict[str, tuple[RejectionKeep, float]] = {}  # source → its cap, and the batch's latest time
    for write in writes:
        row, keep = write.row, write.keep
        if row["kept_bytes"] > 0:
            if keep is None or not 0 < row["kept_bytes"] <= keep.keep:
                row = {**row, **NO_REQUEST, "dropped": NO_ROOM, "dropped_at": row["received_at"]}
            else:
                _, latest = caps.get(row["source"], (keep, row["received_at"]))
                caps[row["source"]] = (keep, max(latest, row["received_at"]))
        rows.append(row)
    await conn.executemany(QUERIES["insert_rejection"], rows)
    for source, (keep, now) in caps.items():
        await _within_cap(conn, source, keep, now)


async def _within_cap(conn: aiosqlite.Connection, source: str, keep: RejectionKeep, now: float) -> None:
    [(kept, window_start, dropped)] = await conn.execute_fetchall(
        QUERIES["rejection_space"], {"source": source}
    )
    excess = kept - keep.keep
    if excess <= 0:
        return
    if now - window_start >= HOUR:
        window_start, dropped = now, 0
    evicted: list[int] = []
    after = 0
    while excess > 0 and dropped < keep.turnover:  # the oldest first, while this hour's turnover lasts
        page = list(
            await conn.execute_fetchall(
                QUERIES["kept_oldest"], {"source": source, "after": after, "limit": _PAGE}
            )
        )
        for rejection_id, size in page:
            if excess <= 0 or dropped >= keep.turnover:
                break
            evicted.append(rejection_id)
            excess, dropped = excess - size, dropped + size
        if len(page) < _PAGE:
            break
        after = page[-1][0]
    refused: list[int] = []
    chosen = set(evicted)
    before = 2**63 - 1
    while excess > 0:  # the turnover is spent: the newest are not kept
        page = list(
            await conn.execute_fetchall(
                QUERIES["kept_newest"], {"source": source, "before": before, "limit": _PAGE}
            )
        )
        for rejection_id, size in page:
            if excess <= 0:
                break
            if rejection_id not in chosen:
                refused.append(rejection_id)
                excess -= size
        if len(page) < _PAGE:
            break
        before = page[-1][0]
    for why, ids in ((EVICTED, evicted), (NO_ROOM, refused)):
        if ids:
            await conn.execute(QUERIES["drop_requests"], {"ids": json.dumps(ids), "why": why, "now": now})
    turnover = {"source": source, "window_start": window_start, "dropped": dropped}
    await conn.execute(QUERIES["turn_over"], turnover)
