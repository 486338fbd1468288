"""Reading a database package's SQL files: named statements from a ``queries.sql`` and numbered migrations.
Each database package (sqlite/, postgres/) has its own files, read once at import. Pure: text in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_BLOCK = re.compile(r"^-- (name|fragment): (\w+)[ \t]*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{(\w+)\}")
_TRAILING_COMMENTS = re.compile(r"(\s*\n\s*--[^\n]*)+\s*$")
_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step, numbered from 1 (SQLite counts them in PRAGMA user_version, PostgreSQL in the table
    gateway_migrations). Append, never edit or reorder."""

    number: int
    name: str  # the file's name without .sql: 0002_executor
    sql: str


def load_queries(text: str) -> dict[str, str]:
    """Split ``-- name: x`` blocks into ``{"x": sql}``, with each ``{fragment}`` a statement includes replaced
    by that ``-- fragment:`` block. Raises ValueError for a name defined twice, an unknown fragment, or a
    fragment nothing includes."""
    parts = _BLOCK.split(text)
    statements: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        if name in statements or name in fragments:
            raise ValueError(
                f"queries.sql: {kind if kind == 'fragment' else 'query'} {name!r} is defined twice"
            )
        if kind == "fragment":  # a comment after it (a section's heading) would swallow what follows it
            body = _TRAILING_COMMENTS.sub("", body)
        (statements if kind == "name" else fragments)[name] = body.strip()
    used: set[str] = set()

    def include(m: re.Match[str]) -> str:
        if m[1] not in fragments:
            raise ValueError(
                f"queries.sql: {{{m[1]}}} names no fragment (define it with -- fragment: {m[1]})"
            )
        used.add(m[1])
        return fragments[m[1]]

    queries = {name: _INCLUDE.sub(include, body) for name, body in statements.items()}
    unused = sorted(set(fragments) - used)
    if unused:
        raise ValueError(f"queries.sql: fragment {unused[0]!r} is included by no statement")
    return queries


def load_migrations(files: Iterable[tuple[str, str]]) -> tuple[Migration, ...]:
    """``(file name, text)`` pairs as migrations in order. Raises ValueError for a name not like
    ``0003_what.sql`` or numbers that do not run 1, 2, 3, … without a gap."""
    found: list[Migration] = []
    for filename, text in files:
        m = _MIGRATION.match(filename)
        if m is None:
            raise ValueError(f"migrations/{filename}: expected a name like 0006_what_it_does.sql")
        found.append(Migration(int(m[1]), filename.removesuffix(".sql"), text))
    found.sort(key=lambda migration: migration.number)
    for position, migration in enumerate(found, start=1):
        if migration.number != position:
            raise ValueError(f"migrations/{migration.name}.sql: expected number {position:04d} here")
    return tuple(found)
