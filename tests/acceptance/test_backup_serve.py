"""`gateway backup` as a real process against a real `gateway serve` that keeps taking signed deliveries: the
gateway never stops acknowledging, and a second gateway started on the backup knows every delivery that was
acknowledged before the backup began."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.database import rows
from tests.support.deliveries import github_headers, push
from tests.support.process import Gateway

pytestmark = pytest.mark.acceptance

PUSH = push("abc")
MAX_DELIVERIES = 3000  # the sender's bound, whatever happens
MAX_SECONDS = 30.0


class Sender:
    """Posts signed GitHub pushes one after another until stopped; keeps when each was acknowledged."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.acked: list[tuple[float, str]] = []  # (monotonic time of the 202, delivery id)
        self.refused: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send)

    def _send(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.gw.url, timeout=10) as client:
            for n in range(MAX_DELIVERIES):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                delivery = f"d-{n}"
                answer = client.post(
                    "/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=delivery)
                )
                if answer.status_code == 202:
                    self.acked.append((time.monotonic(), delivery))
                else:
                    self.refused.append(f"{delivery}: {answer.status_code} {answer.text}")

    def acked_before(self, moment: float) -> set[str]:
        return {delivery for at, delivery in list(self.acked) if at < moment}

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while len(self.acked) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= count, self.refused[:3]


def gateway_backup(db: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "backup", "--db", str(db), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_backup_taken_under_traffic_holds_every_delivery_acknowledged_before_it_began(
    gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = gateway()
    sender = Sender(gw)
    sender.thread.start()
    try:
        sender.wait_for(50)
        began = time.monotonic()
        done = gateway_backup(gw.db, tmp_path / "backup.db")
        ended = time.monotonic()
        sender.wait_for(len(sender.acked) + 20)  # the gateway is still serving: the backup took no lock
    finally:
        sender.stop.set()
        sender.thread.join(timeout=MAX_SECONDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'backup.db'}: ")
    assert "quick_check ok" in done.stdout
    assert sender.refused == []
    before = sender.acked_before(began)
    assert {d for at, d in sender.acked if began <= at <= ended}, (
        "no delivery was acknowledged during the backup"
    )

    restored = Gateway(gw.routes, tmp_path / "backup.db", tmp_path / "restored.log")
    restored.start()  # migrations and WAL at start, as on a restore
    try:
        found = {key for (key,) in rows(restored.db, "SELECT dedupe_key FROM events")}
        assert before <= found
        assert rows(restored.db, "PRAGMA integrity_check") == [("ok",)]
        # Every run of what it holds came along with its event; a sender's retry is known as a duplicate.
        assert rows(
            restored.db, "SELECT count(*) FROM runs WHERE event_id NOT IN (SELECT id FROM events)"
        ) == [(0,)]
        first = min(before, key=lambda d: int(d[2:]))
        again = httpx.post(
            f"{restored.url}/hooks/github", content=PUSH, headers=github_headers(PUSH, delivery=first)
        )
        assert (again.status_code, again.json()["duplicate"]) == (200, True)
    finally:
        restored.stop()
    print(
        f"\n{len(before)} acknowledged before the backup, all in it; {len(found)} in it; the backup took "
        f"{ended - began:.2f} s"
    )
