"""One batch's transaction, the same for every database: intake first, then bulk-job ops, then run ops with
the claims last, so they see the runs just inserted and the slots just freed. Does I/O inside the
transaction the writer opened.
"""

from __future__ import annotations

import json

from gateway.store.ops.db import Db
from gateway.store.ops.intake import EventWrite, RowWrite, apply_intake
from gateway.store.ops.jobs import JOB_OPS, AddOp, apply_jobs
from gateway.store.ops.rejections import RejectionWrite
from gateway.store.ops.runs import CLAIM_LOCK, RUN_OPS, CancelOp, ClaimOp, FinishOp, apply_runs, key_locks
from gateway.store.ops.writer import Op
from gateway.store.rows import key_of


def creates_runs(batch: list[Op]) -> bool:
    """Whether the batch writes new runs (then the executor's claim may ride it)."""
    return any(isinstance(op, EventWrite | AddOp) and op.runs for op in batch)


async def write_batch(conn: Db, batch: list[Op]) -> None:
    """The body of the batch's transaction. Where other processes write at once, the batch first takes every
    lock it will need, at once (see :func:`take_locks`)."""
    if conn.shared:
        await take_locks(conn, batch)
    events = [op for op in batch if isinstance(op, EventWrite)]
    rows = [op for op in batch if isinstance(op, RowWrite)]
    rejections = [op for op in batch if isinstance(op, RejectionWrite)]
    if events or rows or rejections:
        await apply_intake(conn, events, rows, rejections)
    await apply_jobs(conn, [op for op in batch if isinstance(op, JOB_OPS)])
    await apply_runs(conn, [op for op in batch if isinstance(op, RUN_OPS)])


async def take_locks(conn: Db, batch: list[Op]) -> None:
    """The claims lock when the batch claims, and the concurrency keys of the runs it records and of the runs
    it may end, all at once, in the one order every writer uses (Db.lock sorts them). Taken in rounds, as the
    ops reach them, two batches each recording a run on one key and ending the head of another waited on each
    other until PostgreSQL aborted one. The ops take their locks again as they go (a lock held is granted at
    once); only a run a recovery crashes for good takes its key later."""
    names: set[str] = set()
    if any(isinstance(op, ClaimOp) for op in batch):
        names.add(CLAIM_LOCK)
    keys = {
        key
        for op in batch
        if isinstance(op, EventWrite | AddOp)
        for key in map(key_of, op.run_rows)
        if key is not None
    }
    ending = [op.row["run_id"] for op in batch if isinstance(op, FinishOp)]
    ending += [op.run_id for op in batch if isinstance(op, CancelOp)]
    if ending:
        rows = await conn.fetchall("keys_of_runs", {"ids": json.dumps(ending)})
        keys |= {(row["task_id"], row["concurrency_key"]) for row in rows}
    names.update(key_locks(keys))
    if names:
        await conn.lock(sorted(names))
