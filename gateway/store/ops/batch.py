"""One batch's transaction, the same for every database: intake first, then bulk-job ops, then run ops with
the claims last, so they see the runs just inserted and the slots just freed. Does I/O inside the
transaction the writer opened.
"""

from __future__ import annotations

from gateway.store.ops.db import Db
from gateway.store.ops.intake import EventWrite, RowWrite, apply_intake
from gateway.store.ops.jobs import JOB_OPS, AddOp, apply_jobs
from gateway.store.ops.rejections import RejectionWrite
from gateway.store.ops.runs import CLAIM_LOCK, RUN_OPS, ClaimOp, apply_runs
from gateway.store.ops.writer import Op


def creates_runs(batch: list[Op]) -> bool:
    """Whether the batch writes new runs (then the executor's claim may ride it)."""
    return any(isinstance(op, EventWrite | AddOp) and op.runs for op in batch)


async def write_batch(conn: Db, batch: list[Op]) -> None:
    """The body of the batch's transaction. Where other processes write at once, a batch holding a claim
    takes the claims lock first, before any concurrency key's: every writer takes them in that order."""
    if conn.shared and any(isinstance(op, ClaimOp) for op in batch):
        await conn.lock([CLAIM_LOCK])
    events = [op for op in batch if isinstance(op, EventWrite)]
    rows = [op for op in batch if isinstance(op, RowWrite)]
    rejections = [op for op in batch if isinstance(op, RejectionWrite)]
    if events or rows or rejections:
        await apply_intake(conn, events, rows, rejections)
    await apply_jobs(conn, [op for op in batch if isinstance(op, JOB_OPS)])
    await apply_runs(conn, [op for op in batch if isinstance(op, RUN_OPS)])
