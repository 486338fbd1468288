"""The Zapier-style comparison (docs/zapier-comparison.md): one workflow run three ways against one slow,
flaky downstream, and a table of what each did. Pure parts first (settings, luck, table arithmetic), then the
I/O: servers on 127.0.0.1, a ``gateway serve`` subprocess, bench/results/compare-flows-<date>[-quick].md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench import deliveries, load

RESULTS = Path(__file__).resolve().parent / "results"
FLOWS = ("zapier", "in-request", "gateway")
LABELS = {
    "zapier": "Zapier-style: 200 at once, step in the platform",
    "in-request": "Zapier-style step inside the request",
    "gateway": "this gateway: ack after fsync, then a task",
}
TASKS_MODULE = "compare_flows_task"  # written beside routes.yaml; the gateway imports it from there
FINAL = {"completed", "failed", "timed_out", "canceled", "crashed"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Every number the demo uses, in model seconds. ``scale`` divides every duration; retry waits are
    divided by ``scale * compress`` as well, so hours of retry schedule fit in minutes."""

    events: int = 50
    seed: int = 7
    scale: float = 1.0
    compress: float = 180.0  # an hour of retry waiting becomes 20 s
    downstream: tuple[float, float] = (1.0, 40.0)  # each call takes a uniform time in this range ...
    failure_rate: float = 0.3  # ... then fails (HTTP 500) with this probability
    interval: float = 0.2  # between the sender's deliveries
    sender_timeout: float = 10.0  # GitHub: a 2xx within 10 s, no automatic redelivery
    step_limit: float = 30.0  # Zapier: an action step must finish in 30 s
    autoreplay: tuple[float, ...] = (300.0, 1800.0, 3600.0, 10800.0, 21600.0)  # 5 m, 30 m, 1 h, 3 h, 6 h
    task_timeout: float = 60.0  # the gateway task's @task(timeout=...), above the downstream's 40 s
    http_timeout: float = 50.0  # the task's own limit on its HTTP call
    attempts: int = 6  # the gateway task's max_attempts: 1 + 5, as many as autoreplay makes
    first_wait: float = 300.0  # its min_timeout: autoreplay's first wait (then 10, 20, 40, 80 min; factor 2)

    def work(self, seconds: float) -> float:
        """A duration of work or patience (a call, a timeout), in real seconds."""
        return seconds / self.scale

    def wait(self, seconds: float) -> float:
        """A retry wait, in real seconds."""
        return seconds / (self.scale * self.compress)

    def task_retry(self) -> dict[str, Any]:
        """The gateway task's ``retry=`` in real seconds (no jitter, so a seed replays the same waits)."""
        low, high = round(self.wait(self.first_wait), 4), round(self.wait(max(self.autoreplay)), 4)
        return dict(max_attempts=self.attempts, factor=2.0, min_timeout=low, max_timeout=high, jitter=False)

    def deadline(self) -> float:
        """Real seconds after the first send by which every flow must have settled (a generous bound)."""
        waits = sum(self.autoreplay) + self.first_wait * (2**self.attempts)
        work = self.events * self.interval + max(1 + len(self.autoreplay), self.attempts) * self.task_timeout
        return self.work(work) + self.wait(waits) + 30.0


def settings_for(*, quick: bool, events: int | None = None, seed: int = 7) -> Settings:
    """The documented modes: default = real-time work, 50 events; quick = every duration / 10, 20 events."""
    base = Settings(scale=10.0, events=20) if quick else Settings()
    return replace(base, seed=seed, events=events if events is not None else base.events)


@dataclass(frozen=True, slots=True)
class Outcome:
    seconds: float  # model seconds, before scaling
    ok: bool


def delivery_ids(settings: Settings) -> list[str]:
    """The sender's X-GitHub-Delivery ids: derived from the seed, so a seed replays the same luck."""
    seed = settings.seed
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"compare-flows/{seed}/{n}")) for n in range(settings.events)]


def outcome(settings: Settings, event: str, call: int) -> Outcome:
    """The downstream's luck for the ``call``-th call (0-based) about ``event``: the same in every flow, so
    the flows face the same slow and failing calls in the same order."""
    rng = random.Random(f"{settings.seed}:{event}:{call}")
    low, high = settings.downstream
    return Outcome(seconds=rng.uniform(low, high), ok=rng.random() >= settings.failure_rate)


@dataclass(frozen=True, slots=True)
class Ack:
    flow: str
    event: str
    status: int | None  # None: no answer within the sender's timeout


@dataclass(frozen=True, slots=True)
class Effect:
    """A downstream call that succeeded: one side effect, at ``at`` seconds after the first send."""

    flow: str
    event: str
    at: float


@dataclass(frozen=True, slots=True)
class Row:
    flow: str
    events: int
    acked: int  # 2xx within the sender's timeout
    completed: int  # the side effect happened at least once
    lost: int  # never happened, and nothing will retry it
    pending: int  # not happened yet, but the flow had not settled by the deadline
    duplicates: int  # side effects beyond the first, per event
    calls: int  # downstream calls made
    completion: float | None  # seconds from the first send to the last first-side-effect


def summarize(
    flow: str,
    events: Sequence[str],
    acks: Iterable[Ack],
    effects: Iterable[Effect],
    calls: int,
    settled: bool,
) -> Row:
    """One flow's row, from what the sender saw and what the downstream recorded; ``settled``: the flow had
    nothing left to do (else events not yet done are pending, not lost)."""
    wanted = set(events)
    acked = sum(1 for a in acks if a.flow == flow and a.event in wanted and 200 <= (a.status or 0) < 300)
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    for e in effects:
        if e.flow == flow and e.event in wanted:
            counts[e.event] += 1
            first[e.event] = min(e.at, first.get(e.event, e.at))
    missing, duplicates = len(wanted) - len(counts), sum(n - 1 for n in counts.values())
    lost, pending = (missing, 0) if settled else (0, missing)
    done = max(first.values()) if first else None
    return Row(flow, len(wanted), acked, len(counts), lost, pending, duplicates, calls, done)


def describe(s: Settings) -> list[str]:
    """The settings, as the lines printed above the table."""
    waits = ", ".join(f"{w / 60:g}" for w in s.autoreplay) + " min"
    low, high = s.downstream
    return [
        f"events: {s.events}, seed {s.seed}; time scale 1/{s.scale:g}: every duration below is divided by "
        f"{s.scale:g}, retry waits by a further {s.compress:g} (an hour of it takes {s.wait(3600):g} s here)",
        f"downstream: {low:g}-{high:g} s per call (uniform), fails {s.failure_rate:.0%} (HTTP 500 at the end "
        f"of the call); a call completes even when its caller has given up",
        f"sender (GitHub's policy): {s.sender_timeout:g} s delivery timeout, no automatic retries; one "
        f"delivery every {s.interval:g} s",
        f"Zapier-style: step limit {s.step_limit:g} s; autoreplay: 5 retries after {waits}; always 200",
        f"gateway: @task(timeout={s.task_timeout:g}) around a {s.http_timeout:g} s HTTP call; retry "
        f"max_attempts={s.attempts}, waits {s.first_wait / 60:g} min doubling each time, jitter off",
    ]


def render(s: Settings, rows: Sequence[Row], *, wall: float) -> str:
    """The settings and the table, as Markdown."""
    head = (
        "| flow | acked in time | completed | lost | duplicate side effects | downstream calls | done after |"
    )
    lines = [*(f"- {line}" for line in describe(s)), "", head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        done = "-" if r.completion is None else f"{r.completion:.1f} s"
        lost = f"{r.lost}" + (f" (+{r.pending} unsettled)" if r.pending else "")
        lines.append(
            f"| {LABELS[r.flow]} | {r.acked}/{r.events} | {r.completed} | {lost} | {r.duplicates} "
            f"| {r.calls} | {done} |"
        )
    lines += ["", f"wall time {wall:.0f} s; 'done after' = last event's first side effect - first send"]
    return "\n".join(lines)


def routes_yaml() -> str:
    """The gateway's routes.yaml: every push to main, with its delivery id as the task's input."""
    return (
        f"tasks: [{TASKS_MODULE}]\n"
        f"sources:\n  github:\n    verify: github\n    secret: {json.dumps(deliveries.SECRET)}\n"
        "routes:\n  - id: push-to-downstream\n    source: github\n    event: push\n"
        "    when: {body.ref: refs/heads/main}\n    task: call-downstream\n"
        "    input: {delivery: headers.X-GitHub-Delivery}\n"
    )


def task_source(s: Settings, url: str) -> str:
    """The gateway task module: one call to the downstream, bounded by its own timeout; a 500 raises."""
    return f'''"""The comparison's task: call the downstream once; an error or a 500 fails the attempt."""

import asyncio
from typing import Any

import httpx

from gateway import Context, task


@task(id="call-downstream", retry={s.task_retry()!r}, timeout={s.work(s.task_timeout)!r})
async def call_downstream(payload: dict[str, Any], ctx: Context) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=None) as client, asyncio.timeout({s.work(s.http_timeout)!r}):
        response = await client.post({url!r}, json={{"event": payload["delivery"]}})
    response.raise_for_status()
    return {{"status": response.status_code}}
'''


# ---- I/O: the servers, the sender and the gateway -------------------------------------------------------


@dataclass
class Lab:
    """The demo's in-process side: the downstream, the Zapier-style receivers and what they recorded."""

    s: Settings
    t0: float = field(default_factory=time.monotonic)
    effects: list[Effect] = field(default_factory=list)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    zaps: set[asyncio.Task[None]] = field(default_factory=set)
    jobs: dict[asyncio.Future[bool], str] = field(default_factory=dict)  # downstream calls in progress
    downstream_url: str = ""

    def calls_of(self, flow: str) -> int:
        return sum(n for (f, _), n in self.calls.items() if f == flow)

    def settled(self, flow: str) -> bool:
        """True once the Zapier-style runs are over and no call of ``flow`` is still working."""
        return all(z.done() for z in self.zaps) and flow not in self.jobs.values()

    async def _work(self, flow: str, event: str, luck: Outcome) -> bool:
        await asyncio.sleep(self.s.work(luck.seconds))
        if luck.ok:
            self.effects.append(Effect(flow, event, time.monotonic() - self.t0))
        return luck.ok

    async def downstream(self, request: Request) -> Response:
        flow, event = request.path_params["flow"], (await request.json())["event"]
        luck = outcome(self.s, event, self.calls[flow, event])
        self.calls[flow, event] += 1
        # Shielded: the work finishes (and its side effect counts) even if the caller hangs up.
        job = asyncio.ensure_future(self._work(flow, event, luck))
        self.jobs[job] = flow
        job.add_done_callback(self.jobs.pop)
        ok = await asyncio.shield(job)
        return Response(status_code=200 if ok else 500)

    async def zap_run(self, client: httpx.AsyncClient, flow: str, event: str) -> None:
        """One Zap run: the action step under the platform's limit, then autoreplay's retries."""
        for attempt in range(1 + len(self.s.autoreplay)):
            if attempt:
                await asyncio.sleep(self.s.wait(self.s.autoreplay[attempt - 1]))
            try:
                async with asyncio.timeout(self.s.work(self.s.step_limit)):
                    response = await client.post(f"{self.downstream_url}/work/{flow}", json={"event": event})
                if response.is_success:
                    return
            except (TimeoutError, httpx.HTTPError):
                pass  # errored: "may or may not have completed successfully", so autoreplay tries again

    def receiver(self, client: httpx.AsyncClient) -> Callable[[Request], Any]:
        async def catch_hook(request: Request) -> Response:
            await request.body()  # Zapier verifies no signature: the URL is the secret
            flow, event = request.path_params["flow"], request.headers["x-github-delivery"]
            run = asyncio.ensure_future(self.zap_run(client, flow, event))
            self.zaps.add(run)
            if flow == "in-request":
                await asyncio.shield(run)
            return JSONResponse({"status": "success"})  # 200 whatever the step did

        return catch_hook


async def serve_app(app: Starlette, port: int, stop: asyncio.Event) -> asyncio.Task[None]:
    """Serve ``app`` in this event loop until ``stop`` is set; return once it accepts connections."""
    config = Config.from_mapping(
        bind=[f"127.0.0.1:{port}"], accesslog=None, errorlog=None, keep_alive_timeout=3600
    )
    server = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return server
        except OSError:
            await asyncio.sleep(0.02)
    raise load.BenchError(f"the in-process server on port {port} did not start")


async def deliver(
    client: httpx.AsyncClient, s: Settings, flow: str, url: str, body: bytes, headers: Any
) -> Ack:
    """One delivery as GitHub makes it: a POST that gives up after the timeout, never retried."""
    try:
        async with asyncio.timeout(s.work(s.sender_timeout)):
            status: int | None = (await client.post(url, content=body, headers=headers)).status_code
    except (TimeoutError, httpx.HTTPError):
        status = None
    return Ack(flow, headers["X-GitHub-Delivery"], status)


async def start_gateway(s: Settings, work: Path, downstream_url: str) -> load.Server:
    """``gateway serve`` on a free port, its routes.yaml and task module written into ``work``."""
    (work / "routes.yaml").write_text(routes_yaml())
    (work / f"{TASKS_MODULE}.py").write_text(task_source(s, f"{downstream_url}/work/gateway"))
    port = load.free_port()
    argv = load.gateway_argv(work / "routes.yaml", work / "gateway.db", port, log_level="warning")
    gateway = load.Server(argv, port=port, log=work / "gateway.log", cpu=None)
    await asyncio.to_thread(gateway.start)
    return gateway


async def send_all(client: httpx.AsyncClient, s: Settings, targets: dict[str, str]) -> list[Ack]:
    """Every event, one every ``interval``, to every flow at once: the same signed bytes to each."""
    sends: list[asyncio.Task[Ack]] = []
    for n, delivery in enumerate(delivery_ids(s)):
        body = deliveries.push_body(n)
        headers = dict(deliveries.github_headers(body, deliveries.SECRET, delivery))
        for flow, url in targets.items():
            sends.append(asyncio.ensure_future(deliver(client, s, flow, url, body, headers)))
        await asyncio.sleep(s.work(s.interval))
    return list(await asyncio.gather(*sends))


async def settle(lab: Lab, flows: list[str], acks: list[Ack], db: Path | None) -> tuple[dict[str, bool], str]:
    """Wait until every flow is over (no run or call left) or the deadline passes; say which settled."""
    settled = dict.fromkeys(flows, False)
    note, deadline = "", lab.t0 + lab.s.deadline()
    while not all(settled.values()) and time.monotonic() < deadline:
        for flow in FLOWS[:2]:
            settled[flow] = lab.settled(flow)
        if db is not None:  # every run, as `gateway runs --json` lists them (events are at most 500)
            argv = [sys.executable, "-m", "gateway", "runs", "--json", "--limit", "500", "--db", str(db)]
            proc = await asyncio.create_subprocess_exec(*argv, cwd=load.ROOT, stdout=asyncio.subprocess.PIPE)
            runs = json.loads((await proc.communicate())[0])["data"]
            acked = sum(1 for a in acks if a.flow == "gateway" and a.status == 202)
            over = len(runs) >= acked and all(r["status"] in FINAL for r in runs)
            settled["gateway"] = over and "gateway" not in lab.jobs.values()
            note = f"\ngateway runs by status: {dict(sorted(Counter(r['status'] for r in runs).items()))}"
        await asyncio.sleep(2.0 if db else 0.1)  # `gateway runs` costs half a CPU second: poll gently
    return settled, note


async def run(
    s: Settings, work: Path, *, with_gateway: bool = True, say: Callable[[str], None] = print
) -> tuple[list[Row], str]:
    """Run the flows side by side; return their rows and the rendered result."""
    lab, stop = Lab(s), asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        ports = load.free_port(), load.free_port()
        lab.downstream_url = f"http://127.0.0.1:{ports[0]}"
        down = Starlette(routes=[Route("/work/{flow}", lab.downstream, methods=["POST"])])
        zap = Starlette(routes=[Route("/hooks/{flow}", lab.receiver(client), methods=["POST"])])
        servers = [await serve_app(down, ports[0], stop), await serve_app(zap, ports[1], stop)]
        targets = {f: f"http://127.0.0.1:{ports[1]}/hooks/{f}" for f in FLOWS[:2]}
        gateway = await start_gateway(s, work, lab.downstream_url) if with_gateway else None
        try:
            if gateway is not None:
                targets["gateway"] = f"{gateway.url}/hooks/github"
            say(f"sending {s.events} events to {', '.join(targets)} ...")
            lab.t0 = time.monotonic()
            acks = await send_all(client, s, targets)
            settled, note = await settle(
                lab, list(targets), acks, None if gateway is None else work / "gateway.db"
            )
            wall = time.monotonic() - lab.t0
            events = delivery_ids(s)
            rows = [summarize(f, events, acks, lab.effects, lab.calls_of(f), settled[f]) for f in targets]
            return rows, render(s, rows, wall=wall) + note
        finally:
            for z in lab.zaps:
                z.cancel()
            if gateway is not None:
                await asyncio.to_thread(gateway.stop)
            stop.set()
            await asyncio.gather(*servers, return_exceptions=True)


async def _until_terminated(s: Settings, work: Path) -> tuple[list[Row], str]:
    """``run``, cancelled by SIGTERM as by Ctrl-C, so that its ``finally`` still stops the gateway."""
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)
    return await run(s, work)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_flows", description=__doc__)
    parser.add_argument(
        "--events", type=int, choices=range(1, 501), metavar="N", help="1-500 (default 50; quick 20)"
    )
    parser.add_argument("--quick", action="store_true", help="every duration divided by 10 (under a minute)")
    parser.add_argument("--seed", type=int, default=7, help="the downstream's luck (default 7)")
    args = parser.parse_args(argv)
    s = settings_for(quick=args.quick, events=args.events, seed=args.seed)
    try:
        with tempfile.TemporaryDirectory(prefix="compare-flows-") as tmp:
            _, text = asyncio.run(_until_terminated(s, Path(tmp)))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: the servers and the gateway were stopped", file=sys.stderr)
        return 130
    print(text)
    name = f"compare-flows-{datetime.date.today().isoformat()}{'-quick' if args.quick else ''}.md"
    RESULTS.mkdir(exist_ok=True)
    command = "python -m bench.compare_flows" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])
    (RESULTS / name).write_text(f"# Zapier-style comparison\n\n`{command.strip()}`\n\n{text}\n")
    print(f"written to bench/results/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
