"""`gateway serve` as a subprocess: signed deliveries in, rows on disk, clean SIGTERM, survival of kill -9."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import standardwebhooks
import stripe

from tests.support.database import rows
from tests.support.deliveries import github_headers, push
from tests.support.process import Gateway
from tests.support.routes import ROUTES

pytestmark = pytest.mark.acceptance

PUSH = push("abc")  # "abc" is replaced to make distinct pushes


def test_signed_deliveries_are_on_disk_when_acknowledged(gateway: Callable[..., Gateway]) -> None:
    gw = gateway()
    accepted = httpx.post(
        f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="g-1")
    )
    assert accepted.status_code == 202

    invoice = b'{"id": "evt_42", "type": "invoice.paid", "data": {}}'
    header = stripe.WebhookSignature.generate_signature_header(invoice.decode(), "whsec_old_stripe_secret")
    paid = httpx.post(
        f"{gw.url}/hooks/stripe",
        content=invoice,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )
    assert paid.status_code == 202

    now = datetime.now(UTC)
    body = '{"type": "plan.changed"}'
    sig = standardwebhooks.Webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").sign("msg_7", now, body)
    billing = httpx.post(
        f"{gw.url}/hooks/billing",
        content=body,
        headers={
            "webhook-id": "msg_7",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": sig,
            "content-type": "application/json",
        },
    )
    assert billing.status_code == 202

    # Read the file with a separate connection while the server runs: acknowledged means committed.
    ids = {r.json()["event_id"] for r in (accepted, paid, billing)}
    stored = rows(gw.db, "SELECT id, source, dedupe_key FROM events")
    assert {row[0] for row in stored} == ids
    assert ("evt_42",) in [(row[2],) for row in stored]
    tasks = rows(gw.db, "SELECT task_id FROM runs ORDER BY task_id")
    assert tasks == [("deploy-preview",), ("record-payment",), ("record-payment",), ("sync-subscription",)]

    tampered = httpx.post(
        f"{gw.url}/hooks/github", content=PUSH + b" ", headers=github_headers(PUSH, delivery="g-2")
    )
    assert (tampered.status_code, tampered.json()["error"]) == (401, "bad_signature")
    again = httpx.post(f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="g-1"))
    assert (again.status_code, again.json()["event_id"], again.json()["duplicate"]) == (
        200,
        accepted.json()["event_id"],
        True,
    )
    assert len(rows(gw.db, "SELECT id FROM events")) == 3


def test_sigterm_exits_cleanly(gateway: Callable[..., Gateway]) -> None:
    gw = gateway()
    assert (
        httpx.post(
            f"{gw.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery="t-1")
        ).status_code
        == 202
    )
    gw.signal(signal.SIGTERM)
    assert gw.wait() == 0
    assert "gateway stopped" in gw.log.read_text()
    assert len(rows(gw.db, "SELECT id FROM events")) == 1


def test_an_event_acknowledged_just_before_kill_9_is_there_after_restart(
    gateway: Callable[..., Gateway],
) -> None:
    gw = gateway()
    answers = []
    for i in range(20):
        body = PUSH.replace(b"abc", f"{i:03d}".encode())
        answers.append(
            httpx.post(
                f"{gw.url}/hooks/github", content=body, headers=github_headers(body, delivery=f"k-{i}")
            )
        )
    gw.signal(signal.SIGKILL)  # no chance to flush anything: only what was fsynced survives
    assert gw.wait() == -signal.SIGKILL
    gw.start()
    listed = httpx.get(f"{gw.url}/healthz")
    assert listed.status_code == 200
    stored = {row[0] for row in rows(gw.db, "SELECT id FROM events")}
    assert {a.json()["event_id"] for a in answers if a.status_code == 202} <= stored
    assert len(stored) == 20
    # and dedupe holds across the restart
    body = PUSH.replace(b"abc", b"000")
    again = httpx.post(f"{gw.url}/hooks/github", content=body, headers=github_headers(body, delivery="k-0"))
    assert (again.status_code, again.json()["event_id"]) == (200, answers[0].json()["event_id"])


def test_a_broken_routes_file_stops_start_up_with_its_problems(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = write_routes("tasks: [{module}]\nroutes: [{id: r, source: nope, task: deploy-preview}]\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--routes",
            str(path),
            "--db",
            str(tmp_path / "x.db"),
            "--port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "routes.yaml:2:18: routes[0].source: unknown source 'nope' (known: none)" in done.stderr


def test_serve_still_needs_every_secret_and_names_the_unset_variable(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    path = write_routes(ROUTES.replace("secret: acme-secret", "secret: ${ACME_SECRET}"))
    command = [sys.executable, "-m", "gateway", "serve", "--routes", str(path)]
    command += ["--db", str(tmp_path / "x.db"), "--port", "1"]
    env = {k: v for k, v in os.environ.items() if k != "ACME_SECRET"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "routes.yaml:15:5: sources.acme.secret: environment variable ACME_SECRET is not set "
        "(set it, or write ${ACME_SECRET:-default})"
    ]
    assert not (tmp_path / "x.db").exists()  # nothing was opened


def test_a_task_module_that_raises_on_import_stops_start_up_naming_the_module_and_line(
    write_routes: Callable[..., Path], tmp_path: Path
) -> None:
    import subprocess
    import sys

    broken = "import os\nTOKEN = os.environ['PAYMENTS_TOKEN']  # not set where the gateway runs\n"
    path = write_routes(tasks_code=broken)
    command = [sys.executable, "-m", "gateway", "serve", "--routes", str(path)]
    command += ["--db", str(tmp_path / "x.db"), "--port", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if " tasks[0]: " in x]  # routes' problems cite it too
    assert line.startswith("routes.yaml:2:9: tasks[0]: importing 'tasks_")
    assert "failed: KeyError: 'PAYMENTS_TOKEN' (" in line and line.endswith(".py:2)")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # nothing was opened
