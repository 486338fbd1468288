"""`gateway migrate [--check]`: the schema migrations the database lacks, applied or only listed. Every
gateway applies them itself at start (under a lock on PostgreSQL, so ten starting at once migrate once); this
command lets a deploy do it first, or see what an upgrade would change.

I/O: the database named by --db.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TextIO

from gateway.cli.flags import AddParser, Env, db_arg
from gateway.errors import GatewayError
from gateway.store.open import is_postgres, migrations, shown


def add_parser(add: AddParser, env: Env) -> None:
    """Add ``migrate``; ``add(name, help)`` makes a subparser."""
    p = add(
        "migrate",
        "Apply the schema migrations the database lacks (what `gateway serve` does at start), or with "
        "--check only list them. Back the database up first (docs/operations.md).",
    )
    db_arg(p, env)
    p.add_argument(
        "--check",
        action="store_true",
        help="change nothing: list what would run, and exit 1 if anything would (a deploy can gate on it)",
    )


def migrate_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    where = shown(args.db)
    if args.check and not is_postgres(args.db) and not Path(args.db).exists():
        print(f"{where}: no database yet; gateway serve or gateway migrate creates it", file=out)
    try:
        todo = asyncio.run(migrations(args.db, apply=not args.check))
    except GatewayError as exc:
        print(f"gateway migrate: {exc}", file=err)
        return 1
    names = ", ".join(m.name for m in todo)
    if args.check:
        print(f"{where}: {len(todo)} migration(s) to apply" + (f": {names}" if todo else ""), file=out)
        return 1 if todo else 0
    print(f"{where}: " + (f"applied {len(todo)} migration(s): {names}" if todo else "up to date"), file=out)
    return 0
