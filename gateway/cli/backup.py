"""`gateway backup PATH`: a consistent, checked copy of the database while `gateway serve` keeps serving it.

I/O: reads the database named by --db, writes PATH, prints what it wrote. Restoring is a file move with the
gateway stopped (docs/operations.md), not a command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TextIO

from gateway.cli.flags import AddParser, Env, db_arg
from gateway.errors import GatewayError


def add_parser(add: AddParser, env: Env) -> None:
    """Add ``backup``; ``add(name, help)`` makes a subparser."""
    p = add(
        "backup",
        "Copy the database to PATH while the gateway keeps serving it: one consistent snapshot, fsynced and "
        "checked (PRAGMA quick_check, schema version) before it takes its name. To restore, stop the gateway "
        "and put the copy in the database's place (docs/operations.md).",
    )
    db_arg(p, env)
    p.add_argument(
        "path",
        metavar="PATH",
        help="the file to write; an existing directory: a file named <db name>-<UTC time>.db in it",
    )
    p.add_argument("--force", action="store_true", help="replace PATH if it exists")


def backup_command(args: argparse.Namespace, env: Env, out: TextIO, err: TextIO) -> int:
    from gateway.store.open import is_postgres, shown
    from gateway.store.sqlite.backup import backup

    if is_postgres(args.db):
        print(
            f"gateway backup: {shown(args.db)} is a PostgreSQL database: back it up with PostgreSQL's own "
            "tools (pg_dump, or a base backup with WAL archiving; docs/scaling.md#backups)",
            file=err,
        )
        return 2
    db = Path(args.db)
    target = Path(args.path)
    if target.is_dir():
        target /= f"{db.stem}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.db"
    try:
        wrote = backup(db, target, force=args.force)
    except GatewayError as exc:
        print(f"gateway backup: {exc}", file=err)
        return 1
    print(
        f"wrote {wrote.path}: {_size(wrote.size)}, schema version {wrote.schema_version}, "
        f"{wrote.events} event(s), {wrote.runs} run(s); quick_check ok",
        file=out,
    )
    return 0


def _size(n: int) -> str:
    """``512 bytes``, ``3.2 MiB (3355443 bytes)``: readable, and exact for a script comparing sizes."""
    if n < 1024:
        return f"{n} bytes"
    value, unit = n / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit} ({n} bytes)"
