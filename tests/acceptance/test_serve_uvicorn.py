"""`gateway serve --server uvicorn` as a subprocess: healthy, a signed delivery stored and its runs completed,
a clean exit on SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.support.database import rows
from tests.support.deliveries import github_headers, push
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

PUSH = push("abc")


def wait_for_runs(gw: Gateway, event_id: str, timeout: float = 20.0) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    while True:
        found = rows(gw.db, "SELECT task_id, status FROM runs WHERE event_id = ? ORDER BY task_id", event_id)
        if (found and all(status == "completed" for _, status in found)) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_under_uvicorn_stores_runs_and_exits_0_on_sigterm(
    gateway: Callable[..., Gateway], how: str
) -> None:
    if how == "flag":
        gw = gateway(args=["--server", "uvicorn"])
    else:
        gw = gateway(env={"GATEWAY_SERVER": "uvicorn"})
    health = httpx.get(f"{gw.url}/healthz")
    assert (health.status_code, health.headers["server"]) == (200, "uvicorn")

    accepted = httpx.post(
        f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="uv-1")
    )
    assert accepted.status_code == 202
    event_id = accepted.json()["event_id"]
    assert rows(gw.db, "SELECT id FROM events") == [(event_id,)]  # on disk when acknowledged
    runs = wait_for_runs(gw, event_id)
    assert runs == [("deploy-preview", "completed"), ("record-payment", "completed")]

    gw.signal(signal.SIGTERM)
    assert gw.wait() == 0
    log = gw.log.read_text()
    assert "(uvicorn) with 5 source(s)" in log
    assert "gateway stopped; every acknowledged event is on disk" in log
    assert "color_message" not in log and "Traceback" not in log
