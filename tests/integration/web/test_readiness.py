"""/readyz follows what deliveries meet, not only a small probe row: a disk too full for a delivery but not
for the probe makes the gateway unready until a delivery commits again, or a while passes without failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from gateway.store.ops import base as store_base
from gateway.store.ops.db import Db
from gateway.store.ops.intake import EventWrite
from gateway.store.sqlite.store import SQLiteStore
from tests.support.deliveries import PUSH, github_headers


class NearlyFull(SQLiteStore):
    """Room for the probe's one small row, none for a delivery: what a nearly full disk does."""

    full = False

    async def write(self, conn: Db, batch: list[Any]) -> None:
        await super().write(conn, batch)
        if self.full and any(isinstance(op, EventWrite) for op in batch):
            raise sqlite3.OperationalError("database or disk is full")


async def test_a_disk_that_refuses_deliveries_but_not_the_probe_makes_the_gateway_unready(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    store: NearlyFull = await open_store(cls=NearlyFull)
    client = await client_for(load_config(), store)
    assert (await client.get("/readyz")).status_code == 200
    store.full = True
    refused = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    assert refused.status_code == 503
    ready = await client.get("/readyz")
    assert (ready.status_code, ready.headers["retry-after"], ready.json()["error"]) == (
        503,
        "5",
        "store_unavailable",
    )
    store.full = False
    retried = await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="d-1"))
    assert retried.status_code == 202
    assert (await client.get("/readyz")).json() == {"status": "ready"}  # a delivery committed since


async def test_unready_after_a_failure_only_for_a_while_when_no_delivery_comes_to_prove_otherwise(
    load_config: Callable[..., Any],
    open_store: Callable[..., Any],
    client_for: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A load balancer stops sending to an unready gateway: readiness must come back without deliveries.
    monkeypatch.setattr(store_base, "READY_AFTER_FAILURE", 0.2)
    store: NearlyFull = await open_store(cls=NearlyFull)
    client = await client_for(load_config(), store)
    store.full = True
    assert (await client.post("/hooks/github", content=PUSH, headers=github_headers(PUSH))).status_code == 503
    assert (await client.get("/readyz")).status_code == 503
    await asyncio.sleep(0.25)
    assert (await client.get("/readyz")).status_code == 200  # the probe decides again
