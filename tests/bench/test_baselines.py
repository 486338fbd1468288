"""The hand-written baselines store every request they answer 202, with or without the lock (a real SQLite
file in tmp_path, the app in process)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

from bench import baselines


@pytest.mark.parametrize("mode", baselines.MODES)
async def test_every_202_is_a_committed_row(mode: str, tmp_path: Path) -> None:
    db = tmp_path / f"{mode}.db"
    async with baselines.opened(db) as conn:
        transport = httpx.ASGITransport(app=baselines.make_app(conn, mode))
        async with httpx.AsyncClient(transport=transport, base_url="http://baseline.test") as client:
            answers = await asyncio.gather(
                *(client.post("/hooks/github", content=b'{"n": %d}' % n) for n in range(20))
            )
            health = await client.get("/healthz")
        # Read through another connection while the baseline's is still open: answered means committed.
        with sqlite3.connect(db) as reader:
            bodies = sorted(row[0] for row in reader.execute("SELECT body FROM events"))
            journal = reader.execute("PRAGMA journal_mode").fetchone()[0]
    assert [a.status_code for a in answers] == [202] * 20
    assert health.json() == {"status": "ok"}
    assert bodies == sorted(b'{"n": %d}' % n for n in range(20))
    assert journal == "wal"


async def test_an_unknown_baseline_is_refused(tmp_path: Path) -> None:
    async with baselines.opened(tmp_path / "x.db") as conn:
        with pytest.raises(ValueError, match=r"^unknown baseline 'fast' \(choose one of: locked, shared\)$"):
            baselines.make_app(conn, "fast")
