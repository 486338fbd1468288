"""The body budget on the real app: while requests hold the budget's bytes, a large body is refused with
503 overloaded + Retry-After and kept as a rejection, a typical delivery is still stored, and every byte is
given back however a request ends (issue 17, defect 3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from gateway.web.budget import ALWAYS_TAKEN, BodyBudget
from tests.support.deliveries import github_headers

KIB = 1024


async def held_open(first: bytes, release: asyncio.Event, rest: bytes = b"") -> AsyncIterator[bytes]:
    """A chunked body that sends ``first``, then waits for ``release`` before sending ``rest``."""
    yield first
    await release.wait()
    if rest:
        yield rest


async def test_past_the_budget_a_large_body_gets_503_and_is_kept_while_a_typical_one_is_stored(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    config, store = load_config(), await open_store()
    budget = BodyBudget(limit=4 * ALWAYS_TAKEN)
    client: httpx.AsyncClient = await client_for(config, store, budget=budget)
    release = asyncio.Event()
    holding = asyncio.create_task(
        client.post("/hooks/open", content=held_open(b"a" * 3 * ALWAYS_TAKEN, release, b"b" * 10))
    )
    while budget.held < 3 * ALWAYS_TAKEN:  # the first request holds three quarters of the budget
        await asyncio.sleep(0.01)

    refused = await client.post("/hooks/open", content=b"c" * 2 * ALWAYS_TAKEN)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert refused.json()["error"] == "overloaded"
    assert "--body-budget" in refused.json()["detail"]

    body = b'{"ref": "refs/heads/main"}'
    headers = github_headers(body, "gh-secret", "d-1")
    typical = await client.post("/hooks/github", content=body, headers=headers)
    assert typical.status_code == 202, typical.text

    release.set()
    held = await holding
    assert held.status_code == 202, held.text
    assert budget.held == 0
    [rejection] = await store.reads.list_rejections(source="open")
    assert (rejection.reason, rejection.body_size) == ("overloaded", 2 * ALWAYS_TAKEN)


async def test_every_way_a_request_ends_gives_its_bytes_back(
    load_config: Callable[..., Any], open_store: Callable[..., Any], client_for: Callable[..., Any]
) -> None:
    """Stored, refused for its signature, too large, too slow: afterwards the budget holds nothing."""
    config, store = load_config(), await open_store()
    budget = BodyBudget(limit=16 * ALWAYS_TAKEN)
    client: httpx.AsyncClient = await client_for(config, store, budget=budget, body_timeout=0.2)
    big = b"x" * (2 * ALWAYS_TAKEN)
    assert (await client.post("/hooks/open", content=big)).status_code == 202
    forged = {"X-Hub-Signature-256": "sha256=00", "X-GitHub-Event": "push", "X-GitHub-Delivery": "d"}
    assert (await client.post("/hooks/github", content=big, headers=forged)).status_code == 401
    acme = {"X-Acme-Signature": "sha256=00", "X-Acme-Delivery": "d"}  # acme's max_body is 1 KiB
    assert (await client.post("/hooks/acme", content=b"y" * 2 * KIB, headers=acme)).status_code == 413
    never = asyncio.Event()
    slow = await client.post("/hooks/open", content=held_open(b"z" * 2 * ALWAYS_TAKEN, never))
    assert slow.status_code == 408
    assert budget.held == 0
    assert budget.peak >= 2 * ALWAYS_TAKEN
