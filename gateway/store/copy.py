"""`gateway copy`: a SQLite file's events, runs, attempts, rejections and jobs into a PostgreSQL store, table
by table in the order their references need (events → runs → attempts → rejections → jobs), a page per
transaction, then verified: every table counted on both sides, and a sample of records (first, last and some
at random per table) compared field by field through both stores' reads.

Only into an empty destination, or to resume its own copy: the destination's ``copied_from`` meta row names
the source (its real path and first event; the counts it had at the start, and when). A copy interrupted
anywhere (Ctrl-C, SIGKILL, a lost connection) loses at most its page in flight, and run again it skips what
is there and copies the rest. The source is read in one snapshot (gateway/store/sqlite/export.py) and never
written; the destination is written by gateway/store/postgres/load.py. No driver is imported here.

I/O: both databases, through those modules.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import StoreError
from gateway.store.open import is_postgres, open_store, shown
from gateway.store.sqlite.export import Source

if TYPE_CHECKING:
    from gateway.store.ops.reads import Reads
    from gateway.store.postgres.load import Destination, Found


@dataclass(frozen=True, slots=True)
class Table:
    """One table copied: its primary key, and the column saying when a row was written."""

    name: str
    key: tuple[str, ...]
    time: str


# In the order their references need. workers (processes of the old host), meta, and rejection_space (kept
# by the destination's triggers as rejections are inserted) are not copied.
TABLES = (
    Table("events", ("id",), "received_at"),
    Table("runs", ("id",), "created_at"),
    Table("attempts", ("run_id", "number"), "started_at"),
    Table("rejections", ("id",), "received_at"),
    Table("jobs", ("id",), "created_at"),
)
NAMES = tuple(t.name for t in TABLES)
SAMPLE = 20  # records compared at random per table, besides the first and the last


@dataclass(frozen=True, slots=True)
class Progress:
    """After each committed page (once for an empty table): rows of ``table`` done (copied, or found there
    from an earlier run) of ``total``, the rows it holds in the source's snapshot (the last page's done)."""

    table: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A difference between the source and the copy: a table's count (``key`` None) or one record."""

    table: str
    key: Any
    what: str


@dataclass(frozen=True, slots=True)
class Copied:
    """What a copy did: the source's rows per table (at its snapshot), the rows inserted now (the rest were
    there from an earlier run), rows the destination holds beyond the source's (written there since the
    copy began), how many records were compared, and every mismatch found (none: the copy is verified)."""

    source: str
    destination: str
    counts: Mapping[str, int]
    inserted: Mapping[str, int]
    extra: Mapping[str, int]
    compared: int
    mismatches: tuple[Mismatch, ...]
    resumed: bool
    seconds: float


async def copy(
    source: Path,
    address: str,
    *,
    batch: int = 1000,
    on_page: Callable[[Progress], None] | None = None,
    sample: int = SAMPLE,
    rng: random.Random | None = None,
) -> Copied:
    """Copy the SQLite file ``source`` into the PostgreSQL database at ``address`` and verify it. StoreError,
    with nothing written, for a source that cannot be copied (missing, not a gateway database, an older
    schema) or a destination that cannot take it (unreachable, holding other data, another copy running).
    ``on_page`` hears of each committed page; what it raises stops the copy there (as an interruption)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    if not is_postgres(address):
        raise StoreError(f"{shown(address)} is not a PostgreSQL address (postgresql://user@host:5432/name)")
    try:
        from gateway.store.postgres import load
    except ImportError as exc:  # psycopg is the optional postgres extra
        raise StoreError(
            f"gateway copy needs the PostgreSQL driver, which is not installed ({exc}): "
            "pip install 'hookgate[postgres]'"
        ) from None
    started = time.monotonic()
    snapshot = await Source.open(source)
    try:
        identity = {**await snapshot.identity(), "started_at": time.time()}
        counts: dict[str, int] = identity["counts"]
        dest = await load.Destination.open(address)
        try:
            resumed = _resumes(source, address, identity, await dest.found(NAMES))
            if resumed is not None:
                identity = dict(resumed)
            await dest.migrate()
            if resumed is None:
                await dest.note_source(identity)
            inserted = {
                t.name: await _table(snapshot, dest, t, counts[t.name], batch, resumed, on_page)
                for t in TABLES
            }
            await dest.move_rejection_ids()
            found = await dest.counts(NAMES)
            extra = await _extra(dest, counts, found, float(identity.get("started_at", time.time())))
        finally:
            await dest.close()
        mismatches = [
            Mismatch(t, None, f"{counts[t]:,} in the source, {found[t]:,} in the copy")
            for t in NAMES
            if found[t] < counts[t] or (found[t] > counts[t] and t not in extra)
        ]
        compared, different = await _compare(snapshot, address, sample, rng or random.Random())
    finally:
        await snapshot.close()
    return Copied(
        source=str(source),
        destination=shown(address),
        counts=counts,
        inserted=inserted,
        extra=extra,
        compared=compared,
        mismatches=(*mismatches, *different),
        resumed=resumed is not None,
        seconds=time.monotonic() - started,
    )


def _resumes(
    source: Path, address: str, identity: Mapping[str, Any], found: Found
) -> Mapping[str, Any] | None:
    """The ``copied_from`` to resume when the destination is this source's copy; None to start one (it holds
    nothing). StoreError, before anything is written, when it holds other data."""
    noted = found.copied_from
    if noted is not None and (noted.get("path"), noted.get("first_event")) == (
        identity["path"],
        identity["first_event"],
    ):
        return noted
    if not found.rows:
        return None
    held = listing(found.rows)
    if noted is not None:
        first = noted.get("first_event") or "no events"
        why = f"it is a copy of {noted.get('path')} (first event {first}), not of {source}"
    else:
        why = "it was not copied from this source"
    raise StoreError(
        f"{shown(address)} already holds {held} and {why}: gateway copy writes only into an empty database, "
        "or finishes its own interrupted copy. Copy into a new database (createdb), or empty this one"
    )


async def _table(
    snapshot: Source,
    dest: Destination,
    table: Table,
    total: int,
    batch: int,
    resumed: Mapping[str, Any] | None,
    on_page: Callable[[Progress], None] | None,
) -> int:
    """Copy one table page by page; the rows it inserted."""
    done = inserted = 0
    async for page in snapshot.pages(table.name, batch):
        inserted += await dest.write(table.name, table.key, page, resuming=resumed is not None)
        done += len(page)
        if on_page is not None:
            on_page(Progress(table.name, done, total))
    if done == 0 and on_page is not None:
        on_page(Progress(table.name, 0, total))
    return inserted


async def _extra(
    dest: Destination, counts: Mapping[str, int], found: Mapping[str, int], since: float
) -> dict[str, int]:
    """Rows the destination holds beyond the source's, per table, where as many were written since the copy
    began (by a gateway already on it); a surplus without such rows is a mismatch, not listed here."""
    extra = {}
    for t in TABLES:
        more = found[t.name] - counts[t.name]
        if more > 0 and await dest.count_since(t.name, t.time, since) >= more:
            extra[t.name] = more
    return extra


async def _compare(snapshot: Source, address: str, n: int, rng: random.Random) -> tuple[int, list[Mismatch]]:
    """Compare the first, last and ``n`` random records of each table, read through each store's Reads
    (the source's on its snapshot, the destination's as a gateway opens it); how many, and what differs."""
    store = await open_store(address)
    try:
        compared, found = 0, []
        for t in TABLES:
            for key in await snapshot.sample(t.name, n, rng):
                compared += 1
                old, new = await _read(snapshot.reads, t.name, key), await _read(store.reads, t.name, key)
                found += [Mismatch(t.name, key, what) for what in differences(old, new)]
    finally:
        await store.close()
    return compared, found


async def _read(reads: Reads, table: str, key: Any) -> Any:
    if table == "events":
        return await reads.get_event(key)
    if table == "runs":
        return await reads.get_run(key)
    if table == "attempts":
        return await reads.attempts_for_run(key)
    if table == "rejections":
        return await reads.get_rejection(key)
    return await reads.get_job(key)


def listing(counts: Mapping[str, int]) -> str:
    """``3 events, 5 runs, 0 attempts and 1 job``. Pure."""
    parts = [f"{n:,} {table[:-1] if n == 1 else table}" for table, n in counts.items()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def differences(old: Any, new: Any) -> list[str]:
    """What differs between a record as the source reads it and as the copy does: the fields by name (a
    list of attempts: each attempt's, by number). Pure."""
    if old == new:
        return []
    if new is None or old is None:
        return ["missing from the copy" if new is None else "missing from the source"]
    if isinstance(old, list):
        if len(old) != len(new):
            return [f"{len(old)} attempt(s) in the source, {len(new)} in the copy"]
        return [
            f"attempt {a.number}: {what}" for a, b in zip(old, new, strict=True) for what in differences(a, b)
        ]
    fields = [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]
    return [f"field {name} differs" for name in fields] or ["differs"]
