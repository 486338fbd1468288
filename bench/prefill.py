"""Fill a fresh gateway database fast: N signed 1 KiB GitHub pushes stored exactly as the gateway stores
them, optionally with one queued ``noop`` run each; and a cache of such databases. I/O: SQLite files.

The schema is the gateway's own (``SQLiteStore.open`` creates and migrates the file). The rows come from the
gateway's own functions: a few deliveries go the whole way (``verify`` → ``admit`` → ``rows``), and the rest
reuse those rows with only the per-delivery fields (ids, times, delivery id, signature, body) swapped in,
which every fill checks against full admissions first. Inserts use sqlite3 ``executemany`` in big
transactions with the journal and fsync off while filling only; the file is switched back to WAL at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import operator
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import deliveries
from gateway.model import Headers, Inbound, new_id
from gateway.routes import load as gateway_config
from gateway.routes.ingest import admit
from gateway.signatures.verify import verify
from gateway.store.rows import event_to_row, run_to_row, with_blocked
from gateway.store.sqlite.sql import MIGRATIONS, QUERIES
from gateway.store.sqlite.store import SQLiteStore

ROWS_VERSION = 1  # bump when the way this module builds rows changes: cached databases are rebuilt
URL = "http://127.0.0.1:8000" + deliveries.SOURCE_PATH  # what the gateway stores as the called URL
REMOTE = "127.0.0.1"
SPACING = 0.001  # seconds between prefilled events; they end a minute before the fill started
_NAMESPACE = uuid.UUID("0f6c2a8e-51d4-4b7e-9d3c-7a1e5f2b8c40")  # delivery ids of prefills, not wrk's
_PROBE = 7  # the delivery whose body shows where push_body puts its per-delivery fields


class PrefillError(Exception):
    """The fast rows no longer match what the gateway writes (the gateway changed): update this module."""


@dataclass(frozen=True, slots=True)
class Prefilled:
    path: Path
    events: int
    runs: int
    seconds: float  # to build it (0 when it came from the cache)
    size: int  # bytes on disk

    def as_dict(self) -> dict[str, Any]:
        seconds, size = round(self.seconds, 2), self.size
        return {"events": self.events, "runs": self.runs, "seconds": seconds, "bytes": size}


def delivery_id(label: str, n: int) -> str:
    """``uuid5(_NAMESPACE, f"{label}-{n}")``, computed without the UUID object (3 times faster; checked)."""
    raw = bytearray(hashlib.sha1(_NAMESPACE.bytes + f"{label}-{n}".encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _Bodies:
    """``deliveries.push_body(n)`` built from a template of push_body's own output (checked against it)."""

    def __init__(self) -> None:
        text = deliveries.push_body(_PROBE).decode()
        after, before = _sha(_PROBE), _sha(_PROBE - 1)
        start = text.index(f"bench commit {_PROBE} ")
        end = text.index('"', start)
        self.message_size = end - start
        head, tail = text[:start], text[end:]
        if head.count(after) != 2 or head.count(before) != 1 or after in tail or before in tail:
            raise PrefillError("push_body's layout changed (commit ids): update bench/prefill.py")
        a, b, c = head.split(after)
        self.parts = (*a.split(before), b, c, tail)
        if len(self.parts) != 5:
            raise PrefillError("push_body's layout changed (parent id): update bench/prefill.py")

    def __call__(self, n: int) -> str:
        p0, p1, p2, p3, tail = self.parts
        sha = _sha(n)
        message = f"bench commit {n} ".ljust(self.message_size, "x")[: self.message_size]
        return f"{p0}{_sha(n - 1)}{p1}{sha}{p2}{sha}{p3}{message}{tail}"


def _sha(n: int) -> str:
    return hashlib.sha1(f"commit-{n}".encode()).hexdigest()


class Rows:
    """The event row (and run rows) the gateway writes for prefilled delivery ``n`` received at ``now``."""

    def __init__(self, config: gateway_config.Config, label: str = "prefill") -> None:
        self.config, self.label = config, label
        self.source = config.sources["github"]
        self.secret = deliveries.SECRET.encode()
        self.body = _Bodies()
        self.template_event, self.template_runs = self.full(_PROBE, 0.0)
        probe_delivery, probe_body = delivery_id(label, _PROBE), self.body(_PROBE)
        signature = _signature(self.secret, probe_body.encode())
        headers = self.template_event["headers"]
        if headers.count(probe_delivery) != 1 or headers.count(signature) != 1:
            raise PrefillError("the stored headers changed shape: update bench/prefill.py")
        before, rest = headers.split(probe_delivery)
        middle, after = rest.split(signature)
        self.headers = (before, middle, after)
        # Fields that hold the body's text (the payload or a run's input, when stored in full).
        self.event_text = [k for k, v in self.template_event.items() if v == probe_body]
        self.run_text = [[k for k, v in row.items() if v == probe_body] for row in self.template_runs]
        for row in self.template_runs:
            if row["concurrency_key"] is not None:
                raise PrefillError("prefilled runs must have no concurrency key (blocking is not tracked)")

    def request(self, n: int) -> Inbound:
        """Delivery ``n`` as the gateway's endpoint sees it (wrk also sends Host and Content-Length)."""
        body = deliveries.push_body(n)
        pairs = deliveries.github_headers(body, deliveries.SECRET, delivery_id(self.label, n))
        pairs = [("Host", "127.0.0.1:8000"), *pairs, ("Content-Length", str(len(body)))]
        return Inbound("POST", URL, Headers(pairs), body, (), REMOTE)

    def full(self, n: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The gateway's whole path for delivery ``n``: verify, admit, encode the rows (slow: ~200 µs)."""
        inbound = self.request(n)
        verdict = verify(
            self.source.scheme,
            self.source.secrets,
            inbound,
            now=now,
            tolerance=self.source.tolerance,
            remote=self.source.remote,
        )
        admission = admit(self.config, self.source, inbound, verdict, now)
        # As store.sqlite.runs.insert_runs binds them: keyless runs are never blocked (checked in __init__).
        return event_to_row(admission.event), with_blocked([run_to_row(run) for run in admission.runs], ())

    def fast(self, n: int, now: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The same rows, from the template with delivery ``n``'s fields swapped in (~20 µs)."""
        text = self.body(n)
        body = text.encode()
        delivery = delivery_id(self.label, n)
        h0, h1, h2 = self.headers
        event_id = new_id("evt", now)
        event = {
            **self.template_event,
            "id": event_id,
            "dedupe_key": delivery,
            "received_at": now,
            "headers": f"{h0}{delivery}{h1}{_signature(self.secret, body)}{h2}",
            "body": body,
        }
        for key in self.event_text:
            event[key] = text  # compact ASCII JSON is stored as it came (checked)
        runs = []
        for row, keys in zip(self.template_runs, self.run_text, strict=True):
            run = {**row, "id": new_id("run", now), "event_id": event_id, "created_at": now}
            for key in keys:
                run[key] = text
            runs.append(run)
        return event, runs

    def check(self, numbers: Sequence[int], now: float) -> None:
        """Raise PrefillError unless :meth:`fast` gives :meth:`full`'s rows (ids aside) for ``numbers``."""
        for n in numbers:
            event, runs = self.fast(n, now)
            full_event, full_runs = self.full(n, now)
            if deliveries.push_body(n) != event["body"]:
                raise PrefillError(f"the fast body of delivery {n} differs from push_body({n})")
            if delivery_id(self.label, n) != str(uuid.uuid5(_NAMESPACE, f"{self.label}-{n}")):
                raise PrefillError("delivery_id differs from uuid5")
            wrong = _differences(full_event, {**event, "id": full_event["id"]})
            if len(runs) != len(full_runs):
                wrong.append(f"{len(runs)} runs instead of {len(full_runs)}")
            for run, full in zip(runs, full_runs, strict=False):
                wrong += _differences(full, {**run, "id": full["id"], "event_id": full["event_id"]})
            if wrong:
                raise PrefillError(
                    f"prefilled delivery {n} differs from what the gateway writes in: {', '.join(wrong)}; "
                    "update bench/prefill.py"
                )

    def fingerprint(self) -> str:
        """What the cached databases depend on: the schema, the insert statements, the template rows."""
        blank = {"id": "", "event_id": "", "received_at": 0, "created_at": 0}
        rows = [{**self.template_event, **blank}] + [{**r, **blank} for r in self.template_runs]
        schema = [m.sql for m in MIGRATIONS] + [QUERIES[name] for name in ("insert_event", "insert_run")]
        text = json.dumps([ROWS_VERSION, schema, rows], sort_keys=True, default=str)  # bytes as their repr
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _differences(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    keys = set(want) | set(got)
    return sorted(k for k in keys if k not in want or k not in got or want[k] != got[k])


def load_config(runs: bool, directory: Path) -> gateway_config.Config:
    """routes.yaml (bench.deliveries) in ``directory``: pushes routed to ``noop`` if ``runs``, else stored
    unrouted (no runs)."""
    return gateway_config.load(deliveries.write_config(directory, routed=runs), {})


async def create_schema(path: Path) -> None:
    """Create and migrate the database file with the gateway's own SQLiteStore."""
    store = await SQLiteStore.open(path)
    await store.close()


def positional(sql: str) -> tuple[str, list[str]]:
    """A statement with ``:name`` parameters as the same statement with ``?N`` ones, and the names in N order:
    sqlite3 binds a tuple faster than it looks names up in a dict."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"?{names.index(match.group(1)) + 1}"

    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return re.sub(r":(\w+)", number, code), names


EVENT_SQL, EVENT_NAMES = positional(QUERIES["insert_event"])
RUN_SQL, RUN_NAMES = positional(QUERIES["insert_run"])
EVENT_VALUES, RUN_VALUES = operator.itemgetter(*EVENT_NAMES), operator.itemgetter(*RUN_NAMES)
Chunk = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


def fill(path: Path, events: int, *, runs: bool, chunk: int = 5_000, now: float | None = None) -> Prefilled:
    """Create ``path`` (it must not exist) holding ``events`` prefilled deliveries, received ``SPACING``
    apart and ending a minute before ``now``, and one queued run each if ``runs``.

    A child process builds the rows while this one inserts them (the two halves cost about the same).
    """
    if path.exists():
        raise FileExistsError(f"{path} exists: prefill fills only a fresh database")
    started = time.perf_counter()
    now = time.time() if now is None else now
    first = now - 60 - events * SPACING
    with tempfile.TemporaryDirectory(prefix="bench-prefill-") as tmp:
        rows = Rows(load_config(runs, Path(tmp)))
    rows.check([0, 1, _PROBE + 1, max(events - 1, 0)], first)
    asyncio.run(create_schema(path))
    context = multiprocessing.get_context("fork")  # the child inherits `rows`: nothing to re-import
    receive, send = context.Pipe(duplex=False)
    builder = context.Process(
        target=_build, args=(rows, events, chunk, first, send), name="prefill-builder", daemon=True
    )
    builder.start()
    send.close()
    try:
        written = _write(path, _received(receive))
    finally:
        receive.close()
        builder.join(timeout=10)
        if builder.is_alive():
            builder.kill()
    if builder.exitcode != 0:
        raise PrefillError(f"the row builder exited with {builder.exitcode}")
    _fsync(path)  # else the first fsync of a gateway on this filesystem writes it out (see copy)
    return Prefilled(path, events, written, time.perf_counter() - started, _size(path))


def _build(rows: Rows, events: int, chunk: int, first: float, out: Connection) -> None:
    """In the child: every chunk's rows as tuples in the statements' parameter order, then None."""
    try:
        for start in range(0, events, chunk):
            event_rows: list[tuple[Any, ...]] = []
            run_rows: list[tuple[Any, ...]] = []
            for n in range(start, min(start + chunk, events)):
                event, runs = rows.fast(n, first + n * SPACING)
                event_rows.append(EVENT_VALUES(event))
                run_rows += map(RUN_VALUES, runs)
            out.send((event_rows, run_rows))
        out.send(None)
    finally:
        out.close()


def _received(receive: Connection) -> Iterator[Chunk]:
    while True:
        try:
            item = receive.recv()
        except EOFError:
            raise PrefillError("the row builder stopped before sending every row") from None
        if item is None:
            return
        yield item


def _write(path: Path, chunks: Iterator[Chunk]) -> int:
    """Insert the chunks, one transaction each, with no journal and no fsync (a fresh file nobody reads
    yet); switch the file back to WAL at the end. Returns the runs written."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the indexes' pages stay in memory
        runs = 0
        for event_rows, run_rows in chunks:
            conn.execute("BEGIN")
            conn.executemany(EVENT_SQL, event_rows)
            conn.executemany(RUN_SQL, run_rows)
            conn.execute("COMMIT")
            runs += len(run_rows)
        [(mode,)] = conn.execute(QUERIES["enable_wal"]).fetchall()
        if mode != "wal":
            raise PrefillError(f"could not switch {path} back to WAL (journal_mode is {mode})")
        return runs
    finally:
        conn.close()


def _size(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if p.exists())


def cache_dir() -> Path:
    """Where prefilled databases are kept between runs: $BENCH_CACHE, else <tmp>/gateway-bench-cache."""
    return Path(os.environ.get("BENCH_CACHE") or Path(tempfile.gettempdir()) / "gateway-bench-cache")


def cached(events: int, *, runs: bool, directory: Path | None = None) -> Prefilled:
    """A prefilled database from the cache, built first if missing. Keyed by size, runs, and a fingerprint
    of the schema and rows: a schema change builds a new one (and removes the outdated one of that size).
    Never write to it: copy it (:func:`copy`).
    """
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-prefill-") as tmp:
        fingerprint = Rows(load_config(runs, Path(tmp))).fingerprint()
    kind = f"prefill-{events}-{'runs' if runs else 'events'}-"
    path = directory / f"{kind}{fingerprint}.db"
    for outdated in directory.glob(f"{kind}*.db"):
        if outdated != path:
            outdated.unlink()
    if path.exists():
        return Prefilled(path, events, events if runs else 0, 0.0, _size(path))
    partial = path.with_suffix(f".part{os.getpid()}")
    for stale in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        stale.unlink(missing_ok=True)
    try:
        made = fill(partial, events, runs=runs)
        os.replace(partial, path)
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return Prefilled(path, made.events, made.runs, made.seconds, made.size)


def copy(source: Path, destination: Path) -> float:
    """Copy a (cached) database for a run that writes to it, and fsync the copy; returns the seconds it took.

    Without the fsync the gateway's first commit would pay for it: on ext4 (data=ordered) an fsync of the
    WAL also writes out the copy's dirty pages, a one-off stall of about a second per GiB copied.
    """
    started = time.perf_counter()
    shutil.copyfile(source, destination)
    _fsync(destination)
    return time.perf_counter() - started


def _fsync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prefill", description=__doc__)
    parser.add_argument("db", type=Path, help="the database file to create (must not exist)")
    parser.add_argument("-n", "--events", type=int, default=100_000, help="events (default 100000)")
    parser.add_argument("--runs", action="store_true", help="one queued noop run per event")
    args = parser.parse_args(argv)
    made = fill(args.db, args.events, runs=args.runs)
    rate = f"{made.events / made.seconds:,.0f} events/s" if made.seconds else "-"
    print(f"{made.path}: {made.events} events, {made.runs} runs, {made.size:,} B; {rate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
