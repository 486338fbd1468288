"""`gateway copy --from FILE --to URL`: move up from SQLite to PostgreSQL, keeping the history. Copies events,
runs, attempts, rejections and jobs into an empty PostgreSQL store (gateway/store/copy.py), says how far it
is, and verifies counts and a sample of records. Interrupted, the same command finishes the copy.

I/O: reads the SQLite file, writes the PostgreSQL database, prints progress to stdout and problems to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import TextIO

from gateway.cli.flags import AddParser, Env
from gateway.errors import GatewayError
from gateway.store.open import is_postgres, shown

PROGRESS_EVERY = 1.0  # seconds between progress lines of one table (its first and last page always show)


def add_parser(add: AddParser, env: Env) -> None:
    """Add ``copy``; ``add(name, help)`` makes a subparser."""
    p = add(
        "copy",
        "Copy a SQLite database's events, runs, attempts, rejections and jobs into an empty PostgreSQL "
        "database, then check counts and a sample of records on both sides. Interrupted, run it again: it "
        "finishes the copy and copies nothing twice. The SQLite file is never written (docs/scaling.md).",
    )
    p.add_argument(
        "--from", dest="source", required=True, metavar="FILE", help="the gateway's SQLite database file"
    )
    target = env.get("GATEWAY_DB") or ""
    target = target if is_postgres(target) else ""
    p.add_argument(
        "--to",
        default=target or None,
        metavar="URL",
        help="the PostgreSQL database, postgresql://user@host:5432/name (env GATEWAY_DB when it is a "
        f"postgresql:// address; now: {shown(target) if target else 'unset'})",
    )
    p.add_argument(
        "--batch",
        type=_positive,
        default=1000,
        metavar="N",
        help="rows per transaction (default: 1000)",
    )


def copy_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.store.copy import Progress, copy, listing

    if args.to is None:
        print(
            "gateway copy: --to is required: the PostgreSQL database to copy into "
            "(postgresql://user@host:5432/name), or set GATEWAY_DB to it",
            file=err,
        )
        return 2
    if not is_postgres(args.to):
        print(
            f"gateway copy: --to {shown(args.to)} is not a PostgreSQL address: give "
            "postgresql://user@host:5432/name (gateway copy copies from SQLite into PostgreSQL)",
            file=err,
        )
        return 1
    last: dict[str, float] = {}

    def progress(p: Progress) -> None:
        now = time.monotonic()
        if p.table not in last or p.done >= p.total or now - last[p.table] >= PROGRESS_EVERY:
            last[p.table] = now
            print(f"{p.table}: {p.done:,} of {p.total:,}", file=out, flush=True)

    source = Path(args.source)
    print(f"copying {source} to {shown(args.to)}", file=out, flush=True)
    try:
        done = asyncio.run(copy(source, args.to, batch=args.batch, on_page=progress))
    except GatewayError as exc:
        print(f"gateway copy: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print(
            "gateway copy: interrupted; every page committed so far is kept: run the same command again to "
            "finish the copy (nothing is copied twice)",
            file=err,
        )
        return 130
    for table, more in done.extra.items():
        print(
            f"{table}: {more:,} more in the copy than in the source, written there since the copy began "
            "(a gateway already writes to it)",
            file=out,
        )
    what = listing(done.counts)
    if done.mismatches:
        for m in done.mismatches:
            where = m.table if m.key is None else f"{m.table} {m.key}"
            print(f"gateway copy: mismatch: {where}: {m.what}", file=err)
        print(
            f"gateway copy: copied {what} from {source} to {done.destination}, but the copy differs from "
            f"the source in {len(done.mismatches)} place(s) above. Was the source written by a gateway "
            "during the copy? Stop it, copy into a new database, and report it if it differs again",
            file=err,
        )
        return 1
    new = sum(done.inserted.values())
    rate = f"{new / done.seconds:,.0f} rows/s" if done.seconds > 0 else "at once"
    if not done.resumed or new == sum(done.counts.values()):
        how = f"in {done.seconds:.1f} s ({rate})"
    elif new:
        how = (
            f"in {done.seconds:.1f} s ({new:,} rows now, at {rate}; the rest were there from an earlier run)"
        )
    else:
        how = f"in {done.seconds:.1f} s (every row was there from an earlier run)"
    print(
        f"copied {what} from {source} to {done.destination} {how}; counts match, and so do the "
        f"{done.compared:,} sampled records",
        file=out,
    )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of rows >= 1, got {text!r}")
    return value
