"""Several gateways and workers on one PostgreSQL database, as users run them across machines: real
`gateway serve --executor off` and `gateway worker` processes on a real server the test starts. Deliveries
are signed and posted over HTTP to either gateway; what ran is read back from the database."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import postgres
from tests.support.deliveries import github_headers
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

ROUTES = """
tasks: [{module}]
queues:
  one-at-a-time: {concurrency: 1}
sources:
  github: {verify: github, secret: gh-secret}
routes:
  - {id: work, source: github, event: push, task: work, input: {ms: body.ms, key: body.key}}
  - {id: serial, source: github, event: serial, task: serial, input: {ms: body.ms}}
"""

# Each task says when it ran by this host's one clock: the judge of overlaps, independent of the store's.
TASKS = """
import asyncio, os, time
from gateway import task

@task(id="work", concurrency_key="payload.key")
async def work(payload, ctx):
    start = time.time()
    await asyncio.sleep((payload.get("ms") or 0) / 1000)
    return {"pid": os.getpid(), "start": start, "end": time.time()}

@task(id="serial", queue="one-at-a-time")
async def serial(payload, ctx):
    start = time.time()
    await asyncio.sleep((payload.get("ms") or 0) / 1000)
    return {"pid": os.getpid(), "start": start, "end": time.time()}
"""


def query(dsn: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


def post(gw: Gateway, delivery: str, *, event: str = "push", **body: object) -> httpx.Response:
    payload = httpx.Request("POST", "/", json={"ref": "refs/heads/main", **body}).content
    headers = github_headers(payload, delivery=delivery, event=event)
    return httpx.post(f"{gw.url}/hooks/github", content=payload, headers=headers, timeout=30)


class Worker:
    """One `gateway worker` process; its database comes in GATEWAY_DB, as `serve --workers` gives it."""

    def __init__(self, routes: Path, dsn: str, log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "worker", "--routes", str(routes)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "GATEWAY_DB": dsn},
                cwd=routes.parent,
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def cluster(
    write_routes: Callable[..., Path], tmp_path: Path, postgres_dsn: str
) -> Iterator[Callable[..., tuple[list[Gateway], list[Worker]]]]:
    """``cluster(gateways, workers)``: that many intake processes and workers on one fresh database."""
    gateways: list[Gateway] = []
    workers: list[Worker] = []

    def start(n_gateways: int, n_workers: int, dsn: str = postgres_dsn) -> tuple[list[Gateway], list[Worker]]:
        routes = write_routes(ROUTES, TASKS)
        for n in range(n_gateways):
            gw = Gateway(routes, dsn, tmp_path / f"gateway{n}.log", args=["--executor", "off"])  # type: ignore[arg-type]
            gw.start()
            gateways.append(gw)
        workers.extend(Worker(routes, dsn, tmp_path / f"worker{n}.log") for n in range(n_workers))
        deadline = time.monotonic() + 30
        while len(query(dsn, "SELECT id FROM workers WHERE stopped_at IS NULL")) < n_workers:
            assert time.monotonic() < deadline, "the workers did not register"
            for w in workers:
                assert w.proc.poll() is None, w.log.read_text()
            time.sleep(0.1)
        return gateways, workers

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(timeout=10)
    for gw in gateways:
        gw.stop()


def at_once(gateways: list[Gateway], delivery: str) -> list[httpx.Response]:
    """The same delivery posted to every gateway at once, as a sender's retry racing its first try."""
    answers: dict[int, httpx.Response] = {}

    def send(n: int, gw: Gateway) -> None:
        answers[n] = post(gw, delivery, key="d")

    threads = [threading.Thread(target=send, args=(n, gw)) for n, gw in enumerate(gateways)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [answers[n] for n in range(len(gateways))]


def one_at_a_time(spans: list[tuple[object, object]]) -> bool:
    """Whether each (start, end) ends before the next starts."""
    return all(float(str(end)) <= float(str(start)) for (_, end), (start, _) in itertools.pairwise(spans))


def settled(dsn: str, runs: int, timeout: float = 60.0) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[object, ...]] = []
    while time.monotonic() < deadline:
        rows = query(dsn, "SELECT id, status, attempts, worker_id FROM runs ORDER BY seq")
        if len(rows) == runs and all(r[1] == "completed" for r in rows):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"runs did not settle: {rows}")


def test_two_gateways_and_two_workers_share_one_database(
    cluster: Callable[..., tuple[list[Gateway], list[Worker]]], postgres_dsn: str
) -> None:
    (a, b), workers = cluster(2, 2)
    answers: list[int] = []
    for n in range(30):  # each delivery to one gateway, keyed by n % 3: three lines in order
        gw = a if n % 2 else b
        answers.append(post(gw, f"push-{n}", ms=20, key=f"repo-{n % 3}").status_code)
    for n in range(6):  # one queue of one, across both workers
        answers.append(post(a if n % 2 else b, f"serial-{n}", event="serial", ms=50).status_code)
    assert answers == [202] * 36

    # The same delivery at both gateways at once: one stores it, the other answers it as a duplicate.
    dupes = [at_once([a, b], f"dup-{n}") for n in range(5)]
    assert [sorted(r.status_code for r in pair) for pair in dupes] == [[200, 202]] * 5
    assert all(len({r.json()["event_id"] for r in pair}) == 1 for pair in dupes)

    rows = settled(postgres_dsn, 41)
    assert {r[2] for r in rows} == {1}  # every run ran once
    ran_by = {str(r[3]) for r in rows}
    registered = {str(i) for (i,) in query(postgres_dsn, "SELECT id FROM workers WHERE kind = 'worker'")}
    assert ran_by == registered and len(ran_by) == 2  # both workers ran runs

    spans = [
        (task, key, json.loads(str(output))["start"], json.loads(str(output))["end"])
        for task, key, output in query(
            postgres_dsn, "SELECT task_id, concurrency_key, output FROM runs ORDER BY seq"
        )
    ]
    assert one_at_a_time(sorted((s, f) for task, _, s, f in spans if task == "serial"))
    for key in ("repo-0", "repo-1", "repo-2"):  # each key's runs ran one at a time, in arrival order
        assert one_at_a_time([(s, f) for task, k, s, f in spans if k == key])
    assert [w.stop() for w in workers] == [0, 0]


def test_postgres_down_under_load_answers_503_and_intake_recovers_without_a_restart(
    cluster: Callable[..., tuple[list[Gateway], list[Worker]]], start_postgres: Callable[..., Any]
) -> None:
    server = start_postgres()
    dsn = postgres.create_database(server, "gateway")
    (gw,), _ = cluster(1, 1, dsn)
    acked: list[str] = []
    codes: list[int] = []
    stop = threading.Event()

    def send() -> None:
        n = 0
        while not stop.is_set():
            response = post(gw, f"load-{n}", ms=0, key=f"k{n}")
            codes.append(response.status_code)
            if 200 <= response.status_code < 300:
                acked.append(response.json()["event_id"])
            else:
                assert response.status_code == 503 and response.headers["retry-after"], response.text
            n += 1
            time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.0)
        server.kill()
        time.sleep(2.0)
        down = len(codes)
        server.restart()
        deadline = time.monotonic() + 30
        while not (len(codes) > down and codes[-1] == 202):
            assert time.monotonic() < deadline, f"intake did not recover: {codes[-20:]}"
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        sender.join()
    assert 503 in codes and codes[-1] == 202
    stored = {str(i) for (i,) in query(dsn, "SELECT id FROM events")}
    assert set(acked) <= stored  # every 2xx is on disk
    settled(dsn, len(stored))  # and the worker, which lost the server too, ran every run


def run_serve(routes: Path, dsn: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway", "serve", "--routes", str(routes), "--db", dsn, "--port", "0"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=routes.parent, check=False)


def test_a_server_that_refuses_connections_stops_start_up_in_one_line_without_the_password(
    write_routes: Callable[..., Path],
) -> None:
    routes = write_routes(ROUTES, TASKS)
    dsn = f"postgresql://gateway:pw-s3cret@127.0.0.1:{postgres.free_port()}/hooks"
    done = run_serve(routes, dsn)
    assert done.returncode == 1, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("gateway serve:")]
    assert "cannot connect to postgresql://gateway@127.0.0.1:" in line and "Connection refused" in line
    assert "pw-s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_a_server_with_no_connection_left_stops_start_up_in_one_line(
    write_routes: Callable[..., Path], start_postgres: Callable[..., Any]
) -> None:
    """Every connection slot taken (a pool elsewhere exhausted them): start-up says so, and serves nothing."""
    server = start_postgres(settings={"max_connections": "3", "superuser_reserved_connections": "0"})
    dsn = postgres.create_database(server, "gateway")
    held = [psycopg.connect(dsn) for _ in range(3)]
    try:
        done = run_serve(write_routes(ROUTES, TASKS), dsn)
    finally:
        for conn in held:
            conn.close()
    assert done.returncode == 1, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("gateway serve:")]
    assert "too many clients already" in line and "Traceback" not in done.stderr, done.stderr
