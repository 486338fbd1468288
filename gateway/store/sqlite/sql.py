"""The SQLite store's SQL, read once from the package: named statements from ``sql/queries.sql`` and the
numbered migrations in ``sql/migrations/``. No database I/O; reads only the package's own files.
"""

from __future__ import annotations

from importlib import resources

from gateway.store.ops.statements import Migration, load_migrations, load_queries

__all__ = ["MIGRATIONS", "QUERIES", "Migration", "load_migrations", "load_queries"]

_SQL = resources.files("gateway.store.sqlite").joinpath("sql")
QUERIES = load_queries(_SQL.joinpath("queries.sql").read_text("utf-8"))
MIGRATIONS = load_migrations(
    (f.name, f.read_text("utf-8")) for f in _SQL.joinpath("migrations").iterdir() if f.name.endswith(".sql")
)
