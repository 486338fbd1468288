"""The crash test: SIGKILL `gateway serve` K times under load from N retrying senders, then prove from the
database that every acknowledged delivery is stored once and every run ended. With ``--workers W`` the
gateway is intake (`serve --executor off`) plus W `gateway worker` processes, and each kill picks intake or
a worker at random. I/O: processes, sockets, files.

``python -m bench.crash [--cycles K] [--senders N] [--seed S] [--workers W] [--json PATH]``: exit 1 names
what broke.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import deliveries
from bench.load import BenchError, Server, free_port, gateway_argv
from gateway.model import COMPLETED, FINAL_STATUSES

SECRET = "crash-github-secret"  # a test-only secret; it guards nothing
TASKS_MODULE = "crash_record"  # written beside routes.yaml, like bench/deliveries.py's no-op module
_NAMESPACE = uuid.UUID("9c4c2f57-3d0e-4a57-8f0f-6f1d1a8e5b3c")
_EXAMPLES = 3

# os.write on an O_APPEND descriptor appends each line whole; SIGKILL keeps the page cache, so no fsync.
# The task writes first, then sleeps: most kills find runs that have executed but not yet finished.
_TASKS_SOURCE = '''"""The crash test's task: append the run id to the executions file, then sleep 0-50 ms."""

import asyncio
import os
import random

from gateway import Context, task

_FD = os.open({path!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

@task(id="record")
async def record(payload: object, ctx: Context) -> None:
    os.write(_FD, f"{{ctx.run_id}}\\n".encode())
    await asyncio.sleep(random.random() * 0.05)
'''

_ROUTES = f"""tasks: [{TASKS_MODULE}]
sources:
  github:
    verify: github
    secret: {json.dumps(SECRET)}
routes:
  - id: record-every-push
    source: github
    event: push
    task: record
"""


# -- what was seen, what was stored, and the pure check of the two --------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One delivery as its sender saw it. ``retried``: a timeout, reset, refusal or 503 made it send again;
    ``failure``: the answer that ended it without an ack (a 4xx, an unexpected status, or giving up)."""

    delivery: str
    acked: bool
    event_id: str | None = None
    attempts: int = 1
    retried: bool = False
    duplicate: bool = False  # the ack was a 200 with "duplicate": true
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class StoredRun:
    id: str
    event_id: str
    status: str
    attempts: int
    crashes: int


@dataclass(frozen=True, slots=True)
class Stored:
    """What the database and the executions file hold at the end."""

    events: Mapping[str, tuple[str, ...]]  # dedupe key (the delivery id) -> ids of the events stored for it
    runs: tuple[StoredRun, ...]
    executions: Mapping[str, int]  # run id -> lines in the executions file (times the task started)


@dataclass(frozen=True, slots=True)
class Outcome:
    figures: dict[str, Any]
    violations: list[str] = field(default_factory=list)  # empty: every invariant holds


def check(
    sent: Sequence[Sent], stored: Stored, *, planned: int = 0, kills: int = 0, exit_code: int = 0
) -> Outcome:
    """The figures of a crash run and every invariant it breaks, each named with examples. Pure.

    ``planned`` SIGKILLs were asked for, ``kills`` were done; ``exit_code`` is the gateway's on SIGTERM."""
    runs_of: dict[str, list[StoredRun]] = {}
    for run in stored.runs:
        runs_of.setdefault(run.event_id, []).append(run)
    sent_ids = {s.delivery for s in sent}
    acked = [s for s in sent if s.acked]
    broken: dict[str, list[str]] = {
        "unacked": [f"{s.delivery}: {s.failure or 'no answer'}" for s in sent if not s.acked],
        "lost": [s.delivery for s in acked if not stored.events.get(s.delivery)],
        "stored twice": [f"{k}: {', '.join(v)}" for k, v in stored.events.items() if len(v) > 1],
        "stray event": [f"{k}: {', '.join(v)}" for k, v in stored.events.items() if k not in sent_ids],
        "wrong event id": [
            f"{s.delivery}: answered {s.event_id}, stored {', '.join(stored.events[s.delivery])}"
            for s in acked
            if len(stored.events.get(s.delivery, ())) == 1 and stored.events[s.delivery] != (s.event_id,)
        ],
        # routes.yaml sends every push to one task: each stored event has exactly one run.
        "event without exactly one run": [
            f"{k}: {v[0]} has {len(runs_of.get(v[0], ()))}"
            for k, v in stored.events.items()
            if len(runs_of.get(v[0], ())) != 1
        ],
        "run not final": [f"{r.id}: {r.status}" for r in stored.runs if r.status not in FINAL_STATUSES],
        "completed but never executed": [
            r.id for r in stored.runs if r.status == COMPLETED and not stored.executions.get(r.id)
        ],
        # Every start of the task is a counted attempt or one the gateway later recorded as crashed.
        "unexplained re-execution": [
            f"{r.id}: {stored.executions[r.id]} executions, {r.attempts} attempt(s), {r.crashes} crash(es)"
            for r in stored.runs
            if stored.executions.get(r.id, 0) > max(1, r.attempts + r.crashes)
        ],
        "execution of an unknown run": sorted(set(stored.executions) - {r.id for r in stored.runs}),
    }
    figures: dict[str, Any] = {
        "kills": kills,
        "sent": len(sent),
        "acked": len(acked),
        "stored": sum(1 for s in sent if stored.events.get(s.delivery)),
        "lost": len(broken["lost"]),
        "stored_twice": len(broken["stored twice"]),
        "requests": sum(s.attempts for s in sent),
        "retried": sum(1 for s in sent if s.retried),
        "retries_answered_duplicate": sum(1 for s in sent if s.retried and s.duplicate),
        "runs": len(stored.runs),
        "runs_final": sum(1 for r in stored.runs if r.status in FINAL_STATUSES),
        "runs_by_status": dict(sorted(Counter(r.status for r in stored.runs).items())),
        "executions": sum(stored.executions.values()),
        "runs_executed_more_than_once": sum(1 for r in stored.runs if stored.executions.get(r.id, 0) > 1),
        "runs_with_crash": sum(1 for r in stored.runs if r.crashes > 0),
        "unexplained_reexecutions": len(broken["unexplained re-execution"]),
        "exit_code_on_sigterm": exit_code,
    }
    violations = [
        f"{name}: {len(items)} (e.g. {', '.join(items[:_EXAMPLES])}{', …' if len(items) > _EXAMPLES else ''})"
        for name, items in broken.items()
        if items
    ]
    whole_run = (
        "" if sent else "sent: not one delivery was sent",
        f"kills: only {kills} of {planned} within --max-seconds" if kills < planned else "",
        f"shutdown: the gateway exited with {exit_code} on SIGTERM" if exit_code else "",
    )
    violations += [v for v in whole_run if v]
    return Outcome(figures, violations)


# -- the harness -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    cycles: int = 3
    senders: int = 8
    seed: int = 1
    pause: float = 0.01  # seconds each sender waits between two new deliveries
    max_seconds: float = 600.0  # the kill phase stops here; settling gets SETTLE_SECONDS more
    keep: Path | None = None  # work in this directory and keep it (default: a temp dir, removed)
    workers: int = 0  # 0: one `gateway serve` runs everything; W: intake plus W `gateway worker` processes
    postgres: str | None = None  # an empty PostgreSQL database to run on instead of a SQLite file


DEFAULT, SETTLE_SECONDS, REQUEST_TIMEOUT = Plan(), 60.0, 5.0
SUMMARY = """crash test: {kills} SIGKILLs (seed {seed}), {senders} senders, {wall_seconds} s
  deliveries  sent {sent}, acked {acked}, stored {stored}, lost {lost}, stored twice {stored_twice}
  senders     {requests} requests; retried {retried} deliveries, {retries_answered_duplicate} acked as dupes
  errors      {sender_errors} (then retried)
  runs        {runs}, final {runs_final} {runs_by_status}; {executions} executions
  crashes     {runs_with_crash} runs recorded one; {runs_executed_more_than_once} ran more than once, \
{unexplained_reexecutions} of them unexplained
  restarts    slowest {restart_seconds_max} s to /healthz; SIGTERM exit {exit_code_on_sigterm}
"""
INVARIANTS = """exit 0 when: no acknowledged delivery is missing from the database (lost 0), none is stored
twice, every delivery was acknowledged with the id of its one stored event, which has its one run; every
run ended in a final status; every task execution beyond the first is matched by a crash the gateway
recorded; the gateway exits 0 on SIGTERM. Else exit 1, naming each broken invariant, with examples."""


class Senders:
    """N threads posting signed deliveries, each retried (same id) after a timeout, reset, refusal or 503
    until it is acknowledged, until ``stop`` is set (no new ones) or the deadline passes (give up)."""

    def __init__(self, port: int, count: int, pause: float, deadline: float) -> None:
        self.port, self.pause, self.deadline = port, pause, deadline
        self.stop = threading.Event()
        self.errors: Counter[str] = Counter()
        self.failures: list[str] = []
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._sent: list[Sent] = []
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> list[Sent]:
        for thread in self._threads:
            thread.join(max(0.0, self.deadline - time.monotonic()) + REQUEST_TIMEOUT + 1)
        with self._lock:
            return list(self._sent)

    def _loop(self) -> None:
        conn: list[http.client.HTTPConnection] = []  # zero or one open keep-alive connection
        try:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                with self._lock:
                    n = next(self._numbers)
                sent = self._deliver(n, conn)
                with self._lock:
                    self._sent.append(sent)
                self.stop.wait(self.pause)
        except Exception as exc:  # a bug of the harness: fail the run rather than test nothing
            with self._lock:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            for c in conn:
                c.close()

    def _deliver(self, n: int, conn: list[http.client.HTTPConnection]) -> Sent:
        body, delivery = deliveries.push_body(n), str(uuid.uuid5(_NAMESPACE, f"crash-{n}"))
        attempts, backoff, retried = 0, 0.02, False
        while time.monotonic() < self.deadline:
            attempts += 1
            try:
                if not conn:
                    conn.append(http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT))
                headers = dict(deliveries.github_headers(body, SECRET, delivery))
                conn[0].request("POST", deliveries.SOURCE_PATH, body, headers)
                answer = conn[0].getresponse()
                status, text = answer.status, answer.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.pop().close()
                status, text = 0, type(exc).__name__.encode()  # TimeoutError, ConnectionRefusedError, …
            if 200 <= status < 300:
                doc = json.loads(text)
                return Sent(delivery, True, doc["event_id"], attempts, retried, doc.get("duplicate") is True)
            if status not in (0, 503):
                return Sent(delivery, False, None, attempts, retried, failure=f"{status} {text[:200]!r}")
            with self._lock:
                self.errors[text.decode() if status == 0 else "503"] += 1
            retried = True
            time.sleep(backoff)
            backoff = min(0.5, backoff * 2)
        return Sent(delivery, False, None, attempts, retried, failure="gave up at the deadline")


def write_config(work: Path) -> Path:
    (work / f"{TASKS_MODULE}.py").write_text(_TASKS_SOURCE.format(path=str(work / "executions.txt")))
    routes = work / "routes.yaml"
    routes.write_text(_ROUTES)
    return routes


Database = Path | str  # a SQLite file, or a postgresql:// address


def rows(db: Database, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``?`` placeholders; "ORDER BY rowid" is insertion order), read-only: what is
    judged is never written."""
    if isinstance(db, str):
        import psycopg

        order = sql.replace("ORDER BY rowid", "ORDER BY seq").replace("?", "%s")
        with psycopg.connect(db, connect_timeout=10) as pg:
            pg.read_only = True
            return pg.execute(order, params).fetchall()  # type: ignore[call-overload]
    with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


def unfinished(db: Database) -> int:
    [(n,)] = rows(db, "SELECT count(*) FROM runs WHERE status IN ('queued', 'executing', 'retrying')")
    return int(n)


def read_store(db: Database, executions: Path) -> Stored:
    events: dict[str, tuple[str, ...]] = {}
    for key, event_id in rows(db, "SELECT dedupe_key, id FROM events ORDER BY rowid"):
        events[key] = (*events.get(key, ()), event_id)
    found = rows(db, "SELECT id, event_id, status, attempts, crashes FROM runs ORDER BY rowid")
    lines = executions.read_text().split() if executions.exists() else []
    return Stored(events, tuple(StoredRun(*row) for row in found), dict(Counter(lines)))


def run(plan: Plan) -> Outcome:
    """Run the crash test; the outcome's figures include the kills, restarts and wall time."""
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        work = plan.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        return _run(plan, work)


def _run(plan: Plan, work: Path) -> Outcome:
    rng = random.Random(plan.seed)
    t0 = time.monotonic()
    deadline = t0 + plan.max_seconds
    db: Database = plan.postgres or work / "gateway.db"
    executions = work / "executions.txt"
    port = free_port()
    routes = write_config(work)
    argv = gateway_argv(routes, db, port, log_level="warning")  # type: ignore[arg-type]
    argv += ["--executor", "off"] if plan.workers else []
    server = Server(argv, port=port, log=work / "server.log", cpu=None)  # both CPUs: tasks run in it too
    server.start()
    workers = [Worker(routes, db, work / f"worker-{n}.log") for n in range(plan.workers)]
    senders = Senders(port, plan.senders, plan.pause, deadline + SETTLE_SECONDS)
    restarts: list[float] = []
    killed: Counter[str] = Counter()
    try:
        senders.start()
        for _ in range(plan.cycles):
            wait = rng.uniform(0.2, 1.0)
            if time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
            victim = rng.randrange(len(workers) + 1) if workers else 0
            started = time.monotonic()
            if victim == 0:
                assert server.process is not None
                server.process.kill()
                server.process.wait()
                server.start()
            else:
                workers[victim - 1].restart()
            killed["intake" if victim == 0 else "worker"] += 1
            restarts.append(time.monotonic() - started)
        senders.stop.set()
        sent = senders.join()
        settle = time.monotonic() + SETTLE_SECONDS
        while unfinished(db) and time.monotonic() < settle:
            time.sleep(0.1)
    except BaseException:
        senders.deadline = 0.0  # no more retries either
        senders.stop.set()
        server.stop()
        for worker in workers:
            worker.stop()
        print(f"server log tail (--keep DIR keeps it):\n{server.tail()}", file=sys.stderr)
        raise
    codes = [server.stop(), *(worker.stop() for worker in workers)]  # intake first, then the workers
    code = next((c for c in codes if c != 0), 0)
    stored = read_store(db, executions)
    outcome = check(sent, stored, planned=plan.cycles, kills=len(restarts), exit_code=code)
    figures = {"seed": plan.seed, "senders": plan.senders, **outcome.figures}
    figures["sender_errors"] = dict(sorted(senders.errors.items()))
    figures["restart_seconds_max"] = round(max(restarts, default=0.0), 2)
    figures["workers"] = plan.workers
    figures["store"] = "postgresql" if plan.postgres else "sqlite"
    figures["kills_of"] = dict(killed)
    figures["wall_seconds"] = round(time.monotonic() - t0, 1)
    violations = [*outcome.violations, *(f"sender failed: {failure}" for failure in senders.failures)]
    if violations:
        print(f"server log tail (--keep DIR keeps it):\n{server.tail()}", file=sys.stderr)
    return Outcome(figures, violations)


class Worker:
    """One `gateway worker` on the crash test's database; :meth:`restart` SIGKILLs and starts it again."""

    def __init__(self, routes: Path, db: Database, log: Path) -> None:
        self.argv = [sys.executable, "-m", "gateway", "worker", "--routes", str(routes), "--db", str(db)]
        self.argv += ["--log-level", "warning", "--log-format", "json"]
        self.log, self.db, self.returncode = log, db, 0
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(self.argv, cwd=self.log.parent, stdout=out, stderr=out)

    def restart(self) -> None:
        """SIGKILL, start again, and wait until it registered (as a supervisor's restart would): a SIGTERM in
        its first moments, before Python has even imported the gateway, would end it by the signal."""
        self.process.kill()
        self.process.wait()
        self.process = self._start()
        deadline = time.monotonic() + 30
        while not self._registered():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"worker did not start again:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)

    def _registered(self) -> bool:
        try:
            query = "SELECT 1 FROM workers WHERE pid = ? AND stopped_at IS NULL"
            return bool(rows(self.db, query, self.process.pid))
        except Exception:  # the file or the table is not there yet
            return False

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode


def summary(outcome: Outcome) -> str:
    head = SUMMARY.format(**outcome.figures)
    return head + "\n".join([f"FAILED {v}" for v in outcome.violations] or ["OK: every invariant holds"])


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.crash",
        description=__doc__.split("\n\n")[0],
        epilog=INVARIANTS,
        formatter_class=_Help,
    )
    add = parser.add_argument
    add("--cycles", type=int, default=DEFAULT.cycles, help="SIGKILLs, each after 0.2-1.0 s")
    add("--senders", type=int, default=DEFAULT.senders, help="concurrent senders")
    add("--seed", type=int, default=DEFAULT.seed, help="seed of the kill times")
    add("--pause", type=float, default=DEFAULT.pause, help="seconds a sender waits between deliveries")
    add("--workers", type=int, default=0, help="W: intake plus W `gateway worker`s, killed at random")
    add("--max-seconds", type=float, default=DEFAULT.max_seconds, help="bound on the kill phase, seconds")
    add("--json", type=Path, metavar="PATH", help="also write the figures as JSON to PATH")
    add("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (database, server log, executions)")
    add(
        "--postgres",
        metavar="URL",
        help="run on this empty PostgreSQL database (postgresql://…) instead of a SQLite file; "
        "`--postgres start` starts a server of its own for the run (Debian's postgresql binaries)",
    )
    args = parser.parse_args(argv)
    plan = Plan(args.cycles, args.senders, args.seed, args.pause, args.max_seconds, args.keep, args.workers)
    try:
        if args.postgres == "start":
            from tests.support import postgres

            with postgres.PostgresServer() as server:
                outcome = run(replace(plan, postgres=postgres.create_database(server, "crash")))
        else:
            outcome = run(replace(plan, postgres=args.postgres))
    except BenchError as exc:
        print(f"crash test: {exc}", file=sys.stderr)
        return 1
    print(summary(outcome))
    if args.json is not None:
        figures = {**outcome.figures, "violations": outcome.violations}
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if outcome.violations else 0


if __name__ == "__main__":
    sys.exit(main())
