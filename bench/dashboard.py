"""The dashboard benchmark: how long each /ui page takes with 1,000,000 events stored, against the same page
with 10,000 and against a floor, all in one run. I/O: SQLite files (prefilled once and cached), the dashboard
app in process; writes bench/results/dashboard-<date>[-quick].{json,md}.

Run from the repository: ``python -m bench dashboard [--quick]`` (or ``python -m bench.dashboard``). Each
database is bench/prefill.py's (signed GitHub pushes, one ``noop`` run each) with a history written over it
once: runs finished (1 in 100 failed) with their attempts but the newest 0.1 %, still queued, and a rejection
per 100 events. The app is ``create_dashboard`` over a ``Service`` on ``SQLiteStore``, signed in with a minted
token, driven by ``httpx.AsyncClient`` over ``ASGITransport``; the floor is a Starlette route answering "ok"
through the same transport. Pages and sizes alternate request by request, so both sizes see the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from bench import executor, load, prefill
from gateway.model import EventFilter, Secret
from gateway.records.page import encode_cursor
from gateway.records.service import Service
from gateway.records.stats import Memo
from gateway.store.rows import filter_params
from gateway.store.sqlite.sql import QUERIES
from gateway.store.sqlite.store import SQLiteStore
from gateway.web.auth import AdminKey, mint
from gateway.web.dashboard import create_dashboard
from gateway.web.dashboard.session import COOKIE

HISTORY_VERSION = 1  # bump when history() changes: cached databases are rebuilt
FAIL_EVERY = 100  # every 100th run failed, the rest completed
REJECT_EVERY = 100  # a rejection beside every 100th event
QUEUED_SHARE = 1000  # the newest 1 / 1000 of the runs are still queued
HOUR, DAY = 3600.0, 86400.0
TIMES = "\u00d7"


@dataclass(frozen=True, slots=True)
class Plan:
    small: int  # events in the small database
    large: int  # events in the large one
    requests: int  # timed GETs per page and size
    warmup: int  # untimed GETs per page and size first
    deep: int  # pages followed for the "deep page" cursor

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(small=1_000, large=20_000, requests=8, warmup=1, deep=5)
        return cls(small=10_000, large=1_000_000, requests=20, warmup=2, deep=10)


# -- the databases -----------------------------------------------------------------------------------------

_FINISH = """
UPDATE runs
SET status = CASE WHEN rowid % :fail_every = 0 THEN 'failed' ELSE 'completed' END,
    attempts = 1,
    started_at = created_at + 0.002,
    duration = 0.001 + (rowid % 50) / 1000.0,
    finished_at = created_at + 0.003 + (rowid % 50) / 1000.0,
    error = CASE WHEN rowid % :fail_every = 0
                 THEN '{"type":"RuntimeError","message":"bench: a failed run","traceback":null}' END
WHERE rowid <= :last
"""
_ATTEMPTS = """
INSERT INTO attempts (run_id, number, started_at, finished_at, outcome, error_type, error_message, logs)
SELECT id, 1, started_at, finished_at, status,
       CASE WHEN status = 'failed' THEN 'RuntimeError' END,
       CASE WHEN status = 'failed' THEN 'bench: a failed run' END, '[]'
FROM runs WHERE finished_at IS NOT NULL ORDER BY rowid
"""
_REJECTIONS = """
INSERT INTO rejections (source, reason, detail, received_at, remote_addr, body_prefix, body_size, kept_bytes)
SELECT source, 'bad_signature', 'the X-Hub-Signature-256 does not match the body', received_at + 0.0005,
       remote_addr, substr(body, 1, 1024), length(body), 0
FROM events WHERE rowid % :reject_every = 0 ORDER BY rowid
"""


def history(path: Path) -> None:
    """Write the history over a fresh prefill: finish its runs (and their attempts) but the newest, and add
    rejections; with the journal and fsync off (a file nobody reads yet), back to WAL at the end."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -262144"):
            conn.execute(f"PRAGMA {pragma}")
        (runs,) = conn.execute("SELECT max(rowid) FROM runs").fetchone()
        conn.execute("BEGIN")
        conn.execute(_FINISH, {"fail_every": FAIL_EVERY, "last": runs - max(1, runs // QUEUED_SHARE)})
        conn.execute(_ATTEMPTS)
        conn.execute(_REJECTIONS, {"reject_every": REJECT_EVERY})
        conn.execute("COMMIT")
        [(mode,)] = conn.execute(QUERIES["enable_wal"]).fetchall()
        if mode != "wal":
            raise prefill.PrefillError(f"could not switch {path} back to WAL (journal_mode is {mode})")
    finally:
        conn.close()
    with path.open("rb") as file:
        os.fsync(file.fileno())


def database(events: int, directory: Path | None = None) -> prefill.Prefilled:
    """The cached database of ``events`` events with their history, built first if missing (prefill.fill,
    then history). Keyed like prefill's cache, plus HISTORY_VERSION. The bench only reads it."""
    directory = directory or prefill.cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        fingerprint = prefill.Rows(prefill.load_config(True, Path(tmp))).fingerprint()
    kind = f"dashboard-{events}-"
    path = directory / f"{kind}{fingerprint}-h{HISTORY_VERSION}.db"
    for outdated in directory.glob(f"{kind}*.db*"):
        if not outdated.name.startswith(path.name):
            outdated.unlink()
    if path.exists():
        return prefill.Prefilled(path, events, events, 0.0, path.stat().st_size)
    partial = path.with_suffix(f".part{os.getpid()}")
    started = time.perf_counter()
    try:
        made = prefill.fill(partial, events, runs=True)
        history(partial)
        os.replace(partial, path)
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)
    return prefill.Prefilled(path, events, made.runs, time.perf_counter() - started, path.stat().st_size)


@dataclass(frozen=True, slots=True)
class Known:
    """What the pages are asked about in one database: read once, before any timing."""

    events: int
    oldest: float
    newest: float
    event_id: str  # the event in the middle of the table
    dedupe_key: str  # its delivery id
    run_id: str  # its run
    middle: str  # a cursor at the middle of the table (what a page there continues from)
    counts: dict[str, int]


def known(path: Path) -> Known:
    with closing(executor.read_only(path)) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in _TABLES}
        oldest, newest = conn.execute("SELECT min(received_at), max(received_at) FROM events").fetchone()
        half = counts["events"] // 2
        e = conn.execute(
            "SELECT id, dedupe_key, received_at FROM events ORDER BY received_at, id LIMIT 1 OFFSET ?",
            (half,),
        ).fetchone()
        (run_id,) = conn.execute("SELECT id FROM runs WHERE event_id = ?", (e["id"],)).fetchone()
        waiting = "SELECT count(*) FROM runs WHERE status IN ('queued', 'retrying')"
        counts["waiting runs"] = conn.execute(waiting).fetchone()[0]
    middle = encode_cursor(e["received_at"], e["id"])
    return Known(counts["events"], oldest, newest, e["id"], e["dedupe_key"], run_id, middle, counts)


_TABLES = ("events", "runs", "attempts", "rejections")


# -- the pages ---------------------------------------------------------------------------------------------

# "recent": a minute after the newest event, as prefill means it (every row in the last hour and day);
# "later": two days after it (no row in any of the pages' windows).
CLOCKS = {"recent": 60.0, "later": 2 * DAY}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    label: str
    path: str  # with {event_id}, {dedupe_key}, {run_id}, {middle} from Known, and {deep} (Site.follow)
    reads: str  # what the page reads, as the report says it
    clock: str = "recent"
    expect: str | None = None  # text the answer must hold (else it measured the wrong page)
    window: bool = False  # counts a time window: its cost grows with the rows in it, not in the table


_OVERVIEW_READS = "windows: deliveries a minute (hour), runs by status (day), failures (hour)"
_REJECTION_READS = "keyset page; reasons of the day (rejection_counts)"
TARGETS = (
    Target("floor", 'floor: a Starlette route answering "ok"', "/floor", "nothing"),
    Target("login", "sign-in page", "/ui/login", "nothing: a template"),
    Target("overview", "overview `/ui/`", "/ui/", _OVERVIEW_READS, window=True),
    Target("overview-later", "overview, windows empty", "/ui/", _OVERVIEW_READS, "later", window=True),
    Target("events", "events, first page", "/ui/events", "keyset page (events_received)"),
    Target("events-deep", "events, after following the cursor", "/ui/events?cursor={deep}", "keyset page"),
    Target("events-middle", "events, at the table's middle", "/ui/events?cursor={middle}", "keyset page"),
    Target(
        "events-source-status",
        "events `?source=github&status=routed`",
        "/ui/events?source=github&status=routed",
        "keyset page; every event matches",
    ),
    Target(
        "events-run-failed",
        "events `?run_status=failed`",
        "/ui/events?run_status=failed",
        "keyset walk until 51 match (1 in 100 does)",
    ),
    Target(
        "events-no-match",
        "events `?source=github&status=unrouted`",
        "/ui/events?source=github&status=unrouted",
        "keyset walk of every event: none matches",
    ),
    Target(
        "search-dedupe",
        "search `?q=` a dedupe key",
        "/ui/events?q={dedupe_key}",
        "index seeks (migration 0009)",
        expect="{event_id}",
    ),
    Target(
        "search-run", "search `?q=` a run id", "/ui/events?q={run_id}", "index seeks", expect="{event_id}"
    ),
    Target("event", "an event", "/ui/events/{event_id}", "primary keys", expect="{run_id}"),
    Target("runs", "runs, first page", "/ui/runs", "keyset page (runs_created)"),
    Target("run", "a run", "/ui/runs/{run_id}", "primary keys", expect="{event_id}"),
    Target("tasks", "tasks `/ui/tasks`", "/ui/tasks", "runs of the day: counts, durations", window=True),
    Target("tasks-later", "tasks, window empty", "/ui/tasks", "runs of the day", "later", window=True),
    Target("rejections", "rejections `/ui/rejections`", "/ui/rejections", _REJECTION_READS, window=True),
    Target(
        "rejections-later",
        "rejections, window empty",
        "/ui/rejections",
        _REJECTION_READS,
        "later",
        window=True,
    ),
)


async def _floor(request: Request) -> Response:
    return PlainTextResponse("ok")


def _stopped(now: float) -> Callable[[], float]:
    """A clock that always says ``now``: every GET of a page sees the same windows."""
    return lambda: now


class Site:
    """One database served: its store, and per clock a dashboard (at /ui, signed in) beside the floor."""

    def __init__(self, store: SQLiteStore, config: Any, facts: Known) -> None:
        self.store, self.facts = store, facts
        secret = secrets.token_urlsafe(32)
        self.clients: dict[str, httpx.AsyncClient] = {}
        for clock, after in CLOCKS.items():
            now = facts.newest + after
            service = Service(store, config, clock=_stopped(now))
            # Every GET computes its figures: what the first viewer pays. The dashboard keeps the windows'
            # figures a while (records/stats.py Memo), which a fixed clock would turn into a cache hit.
            service.stats.memo = Memo(floor=0.0, factor=0.0)
            ui = create_dashboard(service, AdminKey("HS256", Secret(secret)), clock=_stopped(now))
            app = Starlette(routes=[Route("/floor", _floor), Mount("/ui", app=ui)])
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
            token = mint(secret, "HS256", subject="bench", scopes=("read",), ttl=DAY, now=now)
            client.cookies.set(COOKIE, token)
            self.clients[clock] = client
        self.values: dict[str, Any] = asdict(facts)

    async def follow(self, pages: int) -> None:
        """Follow the events listing's cursor ``pages`` pages, as a reader clicking "older" does."""
        service = Service(self.store)
        cursor = None
        for _ in range(pages):
            page = await service.events(EventFilter(), cursor=cursor, limit=50)
            cursor = page.next
        self.values["deep"] = cursor or ""

    async def get(self, target: Target) -> tuple[float, int]:
        path = target.path.format(**self.values)
        client = self.clients[target.clock]
        started = time.perf_counter()
        answer = await client.get(path)
        seconds = time.perf_counter() - started
        if answer.status_code != 200:
            raise load.BenchError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
        if target.expect is not None and target.expect.format(**self.values) not in answer.text:
            raise load.BenchError(f"GET {path} does not show {target.expect.format(**self.values)}")
        return seconds, len(answer.content)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def ms_stats(seconds: Sequence[float]) -> dict[str, float | int]:
    """n, median, p95 (nearest rank) and max, in milliseconds."""
    ordered = sorted(s * 1000 for s in seconds)
    n = len(ordered)
    p95 = ordered[min(n - 1, max(0, round(0.95 * n) - 1))]
    return {
        "n": n,
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "max": round(ordered[-1], 3),
    }


async def measure(plan: Plan, sites: Mapping[str, Site], say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every target on every site, one GET at a time, in rounds: each round walks the targets, and each
    target is asked of every site in turn (the first one first in even rounds, last in odd ones: a page's
    first GET after another page's is the slower), so the sizes of a page are measured side by side."""
    times: dict[tuple[str, str], list[float]] = {(t.name, s): [] for t in TARGETS for s in sites}
    sizes: dict[tuple[str, str], int] = {}
    for r in range(plan.warmup + plan.requests):
        order = list(sites.items())
        for target in TARGETS:
            for size, site in order if r % 2 == 0 else order[::-1]:
                seconds, size_bytes = await site.get(target)
                if r >= plan.warmup:
                    times[(target.name, size)].append(seconds)
                sizes[(target.name, size)] = size_bytes
        if r >= plan.warmup:
            say(f"round {r + 1 - plan.warmup} of {plan.requests}")
    rows = []
    for target in TARGETS:
        by_size = {
            size: {**ms_stats(times[(target.name, size)]), "bytes": sizes[(target.name, size)]}
            for size in sites
        }
        rows.append(
            {
                "name": target.name,
                "reads": target.reads,
                "label": target.label,
                "clock": target.clock,
                "window": target.window,
                "by_size": by_size,
            }
        )
    return with_ratios(rows)


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's large/small ratio of medians, and its medians as multiples of the floor's (same size)."""
    floor = next(r for r in rows if r["name"] == "floor")["by_size"]
    out = []
    for row in rows:
        small, large = (row["by_size"][k]["median"] for k in ("small", "large"))
        ratio = round(large / small, 2) if small else None
        floors = {
            k: round(v["median"] / floor[k]["median"], 1)
            for k, v in row["by_size"].items()
            if floor[k]["median"]
        }
        out.append({**row, "ratio": ratio, "floor_x": floors})
    return out


# -- the statements behind the pages that read a window ------------------------------------------------------


def statements(now: float) -> list[tuple[str, str, dict[str, Any]]]:
    """(page, statement, parameters) of the reads the window pages and the unmatched filter run."""
    no_match = {**filter_params(EventFilter(source="github", status="unrouted")), "before_time": float("inf")}
    no_match |= {"before_id": "", "limit": 51}
    return [
        ("overview", "deliveries_per_minute", {"since": now - HOUR, "until": now}),
        ("overview", "run_status_windows", {"since": now - DAY, "recent": now - HOUR}),
        ("tasks", "run_counts", {"since": now - DAY}),
        ("overview", "queue_depth", {}),
        ("tasks", "task_durations", {"since": now - DAY, "per_task": 1000, "statuses": _FINISHED}),
        ("rejections", "rejection_counts", {"since": now - DAY}),
        ("rejections", "list_rejections", _REJECTION_PAGE | {"since": -float("inf"), "until": float("inf")}),
        ("events, no match", "filter_events_newest", no_match),
    ]


_FINISHED = '["completed", "crashed", "failed", "timed_out"]'
_REJECTION_PAGE = {"source": None, "reason": None, "before_id": float("inf"), "limit": 51}


def explain(path: Path, now: float, repeat: int) -> list[dict[str, Any]]:
    """Each statement's plan (EXPLAIN QUERY PLAN) and its median time over ``repeat`` runs, on ``path``."""
    rows = []
    with closing(executor.read_only(path)) as conn:
        for page, name, params in statements(now):
            sql = QUERIES[name]
            plan = [row["detail"] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            seconds, found = [], 0
            for _ in range(repeat):
                started = time.perf_counter()
                found = len(conn.execute(sql, params).fetchall())
                seconds.append(time.perf_counter() - started)
            rows.append(
                {
                    "page": page,
                    "statement": name,
                    "ms": round(1000 * statistics.median(seconds), 2),
                    "rows": found,
                    "plan": plan,
                }
            )
    return rows


# -- the benchmark -----------------------------------------------------------------------------------------


async def _run(
    plan: Plan, made: Mapping[str, prefill.Prefilled], say: Callable[[str], None]
) -> dict[str, Any]:
    facts = {size: known(m.path) for size, m in made.items()}
    sites: dict[str, Site] = {}
    stores: list[SQLiteStore] = []
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        config = prefill.load_config(True, Path(tmp))
        try:
            for size, m in made.items():
                store = await SQLiteStore.open(m.path)
                stores.append(store)
                sites[size] = Site(store, config, facts[size])
                await sites[size].follow(plan.deep)
            pages = await measure(plan, sites, say)
        finally:
            for site in sites.values():
                await site.aclose()
            for store in stores:
                await store.close()
    say("statements behind the window pages")
    plans = {size: explain(m.path, facts[size].newest + CLOCKS["recent"], 3) for size, m in made.items()}
    return {
        "databases": {
            size: {**made[size].as_dict(), **asdict(facts[size]), "path": str(made[size].path)}
            for size in made
        },
        "pages": pages,
        "statements": plans,
    }


def run(
    quick: bool, say: Callable[[str], None] = lambda text: None, plan: Plan | None = None
) -> dict[str, Any]:
    started, load_before = time.monotonic(), os.getloadavg()
    plan = plan or Plan.of(quick)
    made = {}
    for size, events in (("small", plan.small), ("large", plan.large)):
        say(f"{size} database: {events:,} events")
        made[size] = database(events)  # prefill runs its own event loop: before ours
        if made[size].seconds:
            say(f"  built in {made[size].seconds:.0f} s")
    result = asyncio.run(_run(plan, made, say))
    return {
        "benchmark": "dashboard",
        "mode": "quick" if quick else "full",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": executor.machine(),
        "plan": asdict(plan),
        "clocks": CLOCKS,
        **result,
        "load_average": {"before": load_before, "after": os.getloadavg()},  # 1, 5, 15 min: others' work
        "wall_seconds": round(time.monotonic() - started, 1),
    }


# -- the report --------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def page_table(result: Mapping[str, Any]) -> list[str]:
    small, large = (result["databases"][k]["events"] for k in ("small", "large"))
    lines = [
        f"| page | reads | {small:,}: median / p95 ms | {large:,}: median / p95 ms | ratio "
        f"| {TIMES} floor at {small:,} / {large:,} | KiB |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for row in result["pages"]:
        s, g = row["by_size"]["small"], row["by_size"]["large"]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        floors = " / ".join(f"{row['floor_x'].get(k, 0):,.1f}" for k in ("small", "large"))
        mark = " ‡" if row["window"] and row["clock"] == "recent" else ""
        lines.append(
            f"| {row['label']}{mark} | {row['reads']} | {_ms(s['median'])} / {_ms(s['p95'])} "
            f"| {_ms(g['median'])} / {_ms(g['p95'])} | {ratio} | {floors if row['name'] != 'floor' else '-'} "
            f"| {g['bytes'] / 1024:.0f} |"
        )
    return lines


def statement_table(result: Mapping[str, Any]) -> list[str]:
    small, large = (result["statements"][k] for k in ("small", "large"))
    n, m = (result["databases"][k]["events"] for k in ("large", "small"))
    lines = [
        f"| page | statement | ms at {m:,} | ms at {n:,} | rows | plan at {n:,} |",
        "|---|---|--:|--:|--:|---|",
    ]
    for s, g in zip(small, large, strict=True):
        plan = "; ".join(g["plan"]).replace("|", "\\|")
        lines.append(
            f"| {g['page']} | `{g['statement']}` | {_ms(s['ms'])} | {_ms(g['ms'])} | {g['rows']} | {plan} |"
        )
    return lines


def _databases(result: Mapping[str, Any]) -> str:
    parts = []
    for d in result["databases"].values():
        built = f"built in {d['seconds']:.0f} s" if d["seconds"] else "cached"
        rows = ", ".join(f"{v:,} {k}" for k, v in d["counts"].items())
        parts.append(f"{d['events']:,} events ({d['bytes'] / 2**20:,.0f} MiB, {built}): {rows}")
    return "; ".join(parts)


def markdown(result: Mapping[str, Any]) -> str:
    plan, m, large = result["plan"], result["machine"], result["databases"]["large"]
    load = result["load_average"]
    span = large["newest"] - large["oldest"]
    return "\n".join(
        [
            f"{m['cpus']} CPUs, Python {m['python']}, SQLite {m['sqlite']}; {result['wall_seconds']} s in "
            f"all; load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} after. This machine "
            "moves ±20 % run to run (LIMITS.md): read the ratios, taken side by side.",
            "",
            "Databases: bench/prefill.py's signed GitHub pushes (one source, `github`; every event "
            "`routed`, its delivery id its dedupe key, one `noop` run each), received 1 ms apart, with a "
            "history written over them: every run finished 2 to 51 ms after it was created (1 in "
            f"{FAIL_EVERY} `failed`, the rest `completed`, each with its attempt) but the newest 1 in "
            f"{QUEUED_SHARE}, still queued; and a `bad_signature` rejection beside every {REJECT_EVERY}th "
            f"event. {_databases(result)}.",
            "",
            f"Where the rows lie in time: the {large['events']:,} events span {span:,.0f} s. Pages are read "
            "at **now = a minute after the newest event**, as prefill means it: every row is inside the "
            "overview's last hour and every page's last day. The rows \"windows empty\" are read at now = "
            "two days after it: no row in any window. The dashboard's clock is set to that now, and its "
            "token minted for it.",
            "",
            f"Each page: {plan['warmup']} untimed GETs, then {plan['requests']} timed ones per size, through "
            "`httpx.AsyncClient(transport=ASGITransport(app))` with the session cookie; pages and sizes "
            "alternate GET by GET. ratio = the large size's median / the small one's; "
            f"{TIMES} floor = a page's median / the floor's at the same size. The page \"after following the "
            f'cursor" continues the listing {plan["deep"]} pages in; "at the table\'s middle" continues from '
            "a cursor at its middle event. ‡: counts a time window, whose cost is the rows in the window "
            "(here all of them), not in the table. KiB: the page at the large size.",
            "",
            *page_table(result),
            "",
            "### The statements behind the window pages",
            "",
            "Each run alone with sqlite3 on the same files (read-only, median of 3, now = a minute after the "
            "newest event), and its plan (EXPLAIN QUERY PLAN):",
            "",
            *statement_table(result),
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1,000 and 20,000 events, 8 GETs a page")
    parser.add_argument(
        "--out", type=Path, default=executor.RESULTS, help="results directory (bench/results)"
    )
    args = parser.parse_args(argv)
    try:
        result = run(args.quick, say=lambda text: print(f"-- {text}", file=sys.stderr, flush=True))
    except (load.BenchError, prefill.PrefillError, OSError) as exc:
        print(f"bench dashboard: {exc}", file=sys.stderr)
        return 1
    text = markdown(result)
    path = executor.save(result, text, "dashboard", args.out)
    print(text)
    print(f"written: {path} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
