"""The admin API on a running `gateway serve`: tokens from `gateway token create`, /api beside /hooks or on
its own port, off without a key, and a refused start-up with a weak GATEWAY_ADMIN_SECRET."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.deliveries import github_headers
from tests.support.process import Gateway, free_port

pytestmark = pytest.mark.acceptance

SECRET = "acceptance-admin-secret-7f3c9e1b5d2a4f6e"  # 40 bytes: long enough for HS256
ADMIN_ENV = ("GATEWAY_ADMIN_SECRET", "GATEWAY_ADMIN_PUBLIC_KEY", "GATEWAY_ADMIN_HOST", "GATEWAY_ADMIN_PORT")


@pytest.fixture(autouse=True)
def no_inherited_admin_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states its admin configuration; none leaks in from the shell running the tests."""
    for name in ADMIN_ENV:
        monkeypatch.delenv(name, raising=False)


def push(n: int) -> bytes:
    # Uneven spacing and a trailing newline: the stored body must be these bytes, not a re-encoding.
    text = f'{{"ref":  "refs/heads/main", "after": "sha-{n}",\n "repository": {{"full_name": "o/r"}}}}\n'
    return text.encode()


def deliver(gw: Gateway, body: bytes, delivery: str) -> httpx.Response:
    return httpx.post(f"{gw.url}/hooks/github", content=body, headers=github_headers(body, delivery=delivery))


def token(cwd: Path, *scopes: str) -> str:
    """A token made the way an operator makes one: `gateway token create`, with the gateway's secret."""
    argv = [sys.executable, "-m", "gateway", "token", "create", "--ttl", "10m"]
    for scope in scopes:
        argv += ["--scope", scope]
    env = {**os.environ, "GATEWAY_ADMIN_SECRET": SECRET}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    return done.stdout.strip()


@pytest.fixture
def client() -> Iterator[Callable[[str, str], httpx.Client]]:
    """``client(base, token)``: an httpx client for ``<base>/api`` sending the token; closed at the end."""
    made: list[httpx.Client] = []

    def make(base: str, bearer: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {bearer}"}
        made.append(httpx.Client(base_url=f"{base}/api", headers=headers, timeout=10))
        return made[-1]

    yield make
    for c in made:
        c.close()


def poll(read: Callable[[], Any], done: Callable[[Any], bool], what: str, timeout: float = 10.0) -> Any:
    """Call ``read`` until ``done`` holds for its value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen: {value!r}")
        time.sleep(0.05)


def all_events(api: httpx.Client, **params: str) -> list[dict[str, Any]]:
    answer = api.get("/events", params={**params, "limit": "100"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["next_cursor"] is None
    return list(answer.json()["data"])


def test_a_token_from_the_cli_drives_the_api_beside_the_hooks(
    gateway: Callable[..., Gateway], client: Callable[[str, str], httpx.Client], tmp_path: Path
) -> None:
    gw = gateway(env={"GATEWAY_ADMIN_SECRET": SECRET})
    bodies = {}
    for n in range(3):
        answer = deliver(gw, push(n), f"api-{n}")
        assert answer.status_code == 202, answer.text
        bodies[answer.json()["event_id"]] = push(n)
    bearer = token(tmp_path, "read", "replay", "trigger")
    api = client(gw.url, bearer)

    # Listing pages with a cursor: two, then the third and no further cursor.
    first = api.get("/events", params={"limit": "2"})
    assert first.status_code == 200, first.text
    assert len(first.json()["data"]) == 2 and first.json()["next_cursor"]
    rest = api.get("/events", params={"limit": "2", "cursor": first.json()["next_cursor"]})
    assert rest.status_code == 200, rest.text
    assert len(rest.json()["data"]) == 1 and rest.json()["next_cursor"] is None
    listed = [e["id"] for e in first.json()["data"] + rest.json()["data"]]
    assert sorted(listed) == sorted(bodies)

    for event_id, body in bodies.items():
        download = api.get(f"/events/{event_id}/body")
        assert download.status_code == 200
        assert download.content == body
        assert download.headers["content-type"] == "application/json"

    # A replay makes a new event whose runs the gateway's executor runs to completion.
    original = listed[0]
    replayed = api.post(f"/events/{original}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["replay_of"] == original
    new_event = replayed.json()["event_id"]
    assert new_event not in bodies
    queued = {r["id"] for r in replayed.json()["runs"]}
    assert len(queued) == 2  # deploy-on-push and audit-pushes both match a push to main

    def replay_runs() -> list[dict[str, Any]]:
        answer = api.get("/runs", params={"event_id": new_event})
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    runs = poll(
        replay_runs,
        lambda rs: len(rs) == 2 and all(r["status"] == "completed" for r in rs),
        "the replay's runs to complete",
    )
    assert {r["id"] for r in runs} == queued
    assert {r["task"] for r in runs} == {"deploy-preview", "record-payment"}

    # A trigger repeated with the same Idempotency-Key answers the original run.
    trigger = {"payload": {"repo": "o/r", "sha": "manual"}}
    headers = {"Idempotency-Key": "deploy-manual-1"}
    started = api.post("/tasks/deploy-preview/trigger", json=trigger, headers=headers)
    assert started.status_code == 202, started.text
    again = api.post("/tasks/deploy-preview/trigger", json=trigger, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["event_id"] == started.json()["event_id"]
    assert [r["id"] for r in again.json()["runs"]] == [r["id"] for r in started.json()["runs"]]
    assert [r["task"] for r in started.json()["runs"]] == ["deploy-preview"]

    # A bulk replay is worked by the gateway's background worker: nobody holds it from a terminal.
    github_events = len(all_events(api, source="github"))
    assert github_events == 4  # three deliveries and one replay; the trigger's event is of source @api
    job = api.post("/replays", json={"kind": "replay", "filter": {"source": "github"}})
    assert job.status_code == 202, job.text
    # Original deliveries only: the replay among them is left out, so nothing is replayed twice.
    assert (job.json()["job"]["total"], job.json()["replays_left_out"]) == (3, 1)
    job_id = job.json()["job"]["id"]

    def job_now() -> dict[str, Any]:
        answer = api.get(f"/jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    finished = poll(job_now, lambda j: j["status"] != "running", "the bulk job to finish")
    assert finished["status"] == "completed", finished
    assert finished["done"] == finished["total"] == 3
    assert finished["created"] == 2 * 3
    assert len(all_events(api, source="github")) == github_events + 3

    # Without a token, and with a token lacking the scope.
    anonymous = httpx.get(f"{gw.url}/api/events")
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "missing_token")
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="gateway-admin"'
    reader = client(gw.url, token(tmp_path, "read"))
    assert reader.get("/events", params={"limit": "1"}).status_code == 200
    refused = reader.post(f"/events/{original}/replay")
    assert refused.status_code == 403
    assert refused.json() == {
        "error": "missing_scope",
        "detail": "this token has scopes read; this call needs replay",
    }

    log = gw.log.read_text()
    assert "admin API at /api (HS256 tokens)" in log
    assert SECRET not in log and bearer not in log


def test_with_an_admin_port_the_api_is_served_there_and_not_beside_the_hooks(
    gateway: Callable[..., Gateway], client: Callable[[str, str], httpx.Client], tmp_path: Path
) -> None:
    admin_port = free_port()
    gw = gateway(args=["--admin-port", str(admin_port)], env={"GATEWAY_ADMIN_SECRET": SECRET})
    assert admin_port != gw.port
    bearer = token(tmp_path, "read")
    admin = client(f"http://127.0.0.1:{admin_port}", bearer)

    def listing() -> httpx.Response | None:
        try:  # the hooks listener answered /healthz; the admin one may bind a moment later
            return admin.get("/events")
        except httpx.TransportError:
            return None

    empty = poll(listing, lambda r: r is not None, "the admin listener")
    assert (empty.status_code, empty.json()) == (200, {"data": [], "next_cursor": None})

    beside = httpx.get(f"{gw.url}/api/events", headers={"Authorization": f"Bearer {bearer}"})
    assert beside.status_code == 404
    assert beside.json() == {
        "error": "unknown_source",
        "detail": "no webhook source is served at /api/events",
    }

    delivered = deliver(gw, push(1), "port-1")
    assert delivered.status_code == 202, delivered.text
    listed = admin.get("/events")
    assert [e["id"] for e in listed.json()["data"]] == [delivered.json()["event_id"]]
    assert f"admin API on http://127.0.0.1:{admin_port}/api (HS256 tokens)" in gw.log.read_text()


def test_without_an_admin_key_there_is_no_api(gateway: Callable[..., Gateway]) -> None:
    gw = gateway()
    answer = httpx.get(f"{gw.url}/api/events")
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_source"
    assert deliver(gw, push(1), "off-1").status_code == 202
    assert "admin API off: set GATEWAY_ADMIN_SECRET or --admin-public-key to serve /api" in gw.log.read_text()


def test_a_short_admin_secret_stops_start_up_without_printing_it(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    short = "only-twenty-bytes-xy"
    argv = [sys.executable, "-m", "gateway", "serve", "--routes", str(write_routes())]
    argv += ["--db", str(tmp_path / "gateway.db"), "--port", str(free_port())]
    env = {**os.environ, "GATEWAY_ADMIN_SECRET": short}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert (
        "gateway serve: GATEWAY_ADMIN_SECRET is 20 bytes; it needs at least 32. Make one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    ) in done.stderr
    assert short not in done.stdout + done.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before anything was opened


def _serve_fails(routes: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    argv = [sys.executable, "-m", "gateway", "serve", "--routes", str(routes), "--db", str(tmp_path / "g.db")]
    done = subprocess.run(
        [*argv, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if not line.startswith("WARNING")]
    assert "Traceback" not in done.stderr
    return lines[-1]


def test_a_port_in_use_is_refused_in_one_line(write_routes: Callable[..., Path], tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = _serve_fails(write_routes(), tmp_path, "--port", str(port))
    assert line == (
        f"gateway serve: cannot listen on 127.0.0.1:{port}: Address already in use; is another process "
        "using it? choose another --port (or --admin-port)"
    )


def test_an_admin_port_equal_to_the_hooks_port_is_refused(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    port = str(free_port())
    secret = {"GATEWAY_ADMIN_SECRET": "a" * 40}
    line = _serve_fails(write_routes(), tmp_path, "--port", port, "--admin-port", port, env=secret)
    assert line == (
        f"gateway serve: the admin API and /hooks would both listen on 127.0.0.1:{port}: give the admin API "
        "another port (--admin-port, --metrics-port), or set neither to serve it beside the hooks"
    )
