"""The PostgreSQL store's SQL, read once from the package: named statements from ``sql/queries.sql`` (written
with ``:name`` parameters like SQLite's, turned here into psycopg's ``%(name)s``) and the numbered
migrations in ``sql/migrations/``. No database I/O; reads only the package's own files.
"""

from __future__ import annotations

import re
from importlib import resources

from gateway.store.ops.statements import load_migrations, load_queries

# :name, not the second colon of a cast (x::jsonb) nor a colon inside a word.
_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


def to_psycopg(sql: str) -> str:
    """``:name`` parameters as ``%(name)s``, with every literal ``%`` doubled (psycopg's escape)."""
    return _PARAMETER.sub(r"%(\1)s", sql.replace("%", "%%"))


_SQL = resources.files("gateway.store.postgres").joinpath("sql")
QUERIES = {
    name: to_psycopg(sql)
    for name, sql in load_queries(_SQL.joinpath("queries.sql").read_text("utf-8")).items()
}
MIGRATIONS = load_migrations(
    (f.name, f.read_text("utf-8")) for f in _SQL.joinpath("migrations").iterdir() if f.name.endswith(".sql")
)
