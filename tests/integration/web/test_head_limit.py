"""The apps themselves refuse a request head past HEAD_LIMIT (431), on every listener: a server that let one
through (Hypercorn, when the head's end comes in a later read) does not get it to the endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.web.app import create_app
from gateway.web.listen import HEAD_LIMIT


@pytest.mark.parametrize(("padding", "status"), [(HEAD_LIMIT - 2_000, 202), (HEAD_LIMIT + 10, 431)])
async def test_a_head_over_the_limit_is_refused_and_one_under_it_is_not(
    load_config: Callable[..., Any], open_store: Callable[..., Any], padding: int, status: int
) -> None:
    app = create_app(load_config(), await open_store())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        answer = await client.post("/hooks/open", content=b"{}", headers={"X-Pad": "a" * padding})
    assert answer.status_code == status
    if status == 431:
        assert answer.json() == {
            "error": "head_too_large",
            "detail": f"the request line and headers are over {HEAD_LIMIT} bytes",
        }
        assert answer.headers["connection"] == "close"
