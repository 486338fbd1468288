"""`serve()` under uvicorn, in process on real sockets and a real database: every listener answers, the same
head limit as Hypercorn, a clean stop; and `gateway serve --server uvicorn` without the extra installed."""

from __future__ import annotations

import asyncio
import io
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.cli.main import main
from gateway.routes import load as config_mod
from gateway.server import ServeOptions, serve
from gateway.web.listen import HEAD_LIMIT, UVICORN_MISSING, Listener, run_server
from tests.support.deliveries import github_headers, push
from tests.support.process import free_port

PUSH = push("abc")


async def until_healthy(url: str, task: asyncio.Task[None]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            if task.done():
                task.result()  # raises what stopped it
                raise AssertionError("serve() returned before it was healthy")
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.025)
    raise AssertionError(f"{url}/healthz never answered")


async def raw_request(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_uvicorn_serves_hooks_and_metrics_on_their_own_listeners_then_stops_on_the_event(
    load_config: Callable[..., config_mod.Config], tmp_path: Path
) -> None:
    db = tmp_path / "gateway.db"
    options = ServeOptions(db=db, port=free_port(), metrics_port=free_port(), server="uvicorn")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_config(), options, stop))
    url = f"http://127.0.0.1:{options.port}"
    await until_healthy(url, task)
    async with httpx.AsyncClient() as client:
        accepted = await client.post(
            f"{url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="u-1")
        )
        scraped = await client.get(f"http://127.0.0.1:{options.metrics_port}/metrics")
        beside = await client.get(f"{url}/metrics")
    assert accepted.status_code == 202
    assert scraped.status_code == 200 and "gateway_" in scraped.text
    assert beside.status_code == 404  # /metrics moved to its own listener
    stop.set()
    await asyncio.wait_for(task, 15)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        stored = conn.execute("SELECT id FROM events").fetchall()
    assert stored == [(accepted.json()["event_id"],)]


@pytest.mark.parametrize("server", ["hypercorn", "uvicorn"])
async def test_a_request_head_still_incomplete_past_the_limit_is_refused_with_431(
    server: str, load_config: Callable[..., config_mod.Config], tmp_path: Path
) -> None:
    options = ServeOptions(db=tmp_path / "gateway.db", port=free_port(), server=server)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(load_config(), options, stop))
    try:
        await until_healthy(f"http://127.0.0.1:{options.port}", task)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
        fine = await raw_request(options.port, head + b"a" * 8_000 + b"\r\n\r\n")
        # Past the limit and still no end of head. (Sent whole, so that nothing is left unread when the
        # server closes: a close with unread input resets the connection, and the answer with it.)
        refused = await raw_request(options.port, head + b"a" * (HEAD_LIMIT + 4096))
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert fine.startswith(b"HTTP/1.1 200 ")
    assert refused.startswith(b"HTTP/1.1 431 ")


async def test_a_uvicorn_listener_that_cannot_bind_raises_oserror_not_systemexit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        options = ServeOptions(db=tmp_path / "unused.db", port=port, server="uvicorn")

        async def app(scope: object, receive: object, send: object) -> None:
            raise AssertionError("never called")

        with pytest.raises(OSError, match=rf"^uvicorn could not listen on 127\.0\.0\.1:{port}$"):
            listener = Listener(options.host, options.port, options.server)
            await asyncio.wait_for(run_server(app, listener, asyncio.Event()), 10)


def test_serve_with_uvicorn_missing_says_how_to_install_it_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the `uvicorn` extra were not installed
    out, err = io.StringIO(), io.StringIO()
    db = tmp_path / "never.db"
    argv = ["serve", "--routes", str(write_routes()), "--db", str(db), "--server", "uvicorn"]
    assert main(argv, env={}, out=out, err=err) == 1
    assert err.getvalue().splitlines()[-1] == f"gateway serve: {UVICORN_MISSING}"
    assert "Traceback" not in err.getvalue()
    assert UVICORN_MISSING == (
        "--server uvicorn needs uvicorn, httptools and uvloop, which are not installed: "
        "pip install 'hookgate[uvicorn]' (or use --server hypercorn)"
    )
    assert not db.exists()
