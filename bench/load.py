"""The load harness: start a server under test as a pinned subprocess, drive it with wrk walking a file of
deliveries (bench/deliveries.py), read back req/s, latency percentiles, errors. I/O: processes, sockets.

CPU 0 runs the server, CPU 1 wrk (``taskset``, when there is one and two CPUs): the two never compete.
One measurement by hand: ``python -m bench.load gateway -c 50 -d 10`` (or ``floor``; ``--help``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench import deliveries

ROOT = Path(__file__).resolve().parent.parent  # the repository: `python -m gateway` resolves from here
SERVER_CPU, LOAD_CPU = 0, 1

# Every request is formatted in init(), before wrk starts its clock: building one per request in request()
# would spend wrk's own thread on Lua string work and skew the figures. Thread k of T takes the lines k, k+T,
# ... so threads never send the same delivery; `wraps` counts passes beyond the end (duplicates were sent).
LUA = r"""
prebuilt, count, wraps = {}, 0, 0
local position = 0

local function split(line)
  local fields, start = {}, 1
  while true do
    local stop = string.find(line, "\t", start, true)
    if not stop then fields[#fields + 1] = string.sub(line, start); return fields end
    fields[#fields + 1] = string.sub(line, start, stop - 1)
    start = stop + 1
  end
end

function init(args)
  local path, threads, n = args[1], tonumber(args[2]) or 1, 0
  for line in io.lines(path) do
    if #line > 0 then
      if n % threads == (index or 0) then
        local f, headers = split(line), {}
        for k = 3, #f - 1 do
          local name, value = string.match(f[k], "^([^:]+): (.*)$")
          headers[name] = value
        end
        count = count + 1
        prebuilt[count] = wrk.format(f[1], f[2], headers, f[#f])
      end
      n = n + 1
    end
  end
  if count == 0 then error("no requests for this thread in " .. tostring(path)) end
end

function request()
  position = position + 1
  if position > count then position, wraps = 1, wraps + 1 end
  return prebuilt[position]
end

local threads = {}
function setup(thread)
  thread:set("index", #threads)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local wrapped, built = 0, 0
  for _, t in ipairs(threads) do wrapped, built = wrapped + t:get("wraps"), built + t:get("count") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
    '"wraps":%d,"deliveries":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    wrapped, built))
end
"""
_MARK = "BENCH_JSON "


class BenchError(Exception):
    """The benchmark could not run (a missing tool, a server that did not start, wrk failing)."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One wrk run. Latencies in milliseconds; ``non_2xx`` counts non-2xx/3xx answers; ``socket_errors`` the
    connect, read, write and timeout errors; ``wraps`` > 0 means the file ran out and deliveries repeated."""

    connections: int
    seconds: float
    requests: int
    rps: float
    p50: float
    p90: float
    p99: float
    p999: float
    mean: float
    max: float
    non_2xx: int
    socket_errors: int
    errors: Mapping[str, int]
    wraps: int
    deliveries: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": dict(self.errors)}


def parse_wrk(stdout: str, connections: int) -> Measurement:
    """The Measurement in wrk's output (the JSON line the Lua ``done()`` hook prints)."""
    found = [line[len(_MARK) :] for line in stdout.splitlines() if line.startswith(_MARK)]
    if not found:
        raise BenchError(f"wrk printed no {_MARK.strip()} line; its output was:\n{stdout}")
    raw = json.loads(found[-1])
    lat, errors = raw["latency_us"], raw["errors"]
    seconds = raw["duration_us"] / 1e6
    return Measurement(
        connections=connections,
        seconds=round(seconds, 3),
        requests=raw["requests"],
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        **{k: round(lat[k] / 1000, 3) for k in ("p50", "p90", "p99", "p999", "mean", "max")},
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        errors=errors,
        wraps=raw["wraps"],
        deliveries=raw["deliveries"],
    )


def wrk_path() -> str:
    found = shutil.which("wrk") or ("/usr/bin/wrk" if os.access("/usr/bin/wrk", os.X_OK) else None)
    if found is None:
        raise BenchError("wrk is missing: install it (apt-get install wrk) to run the benchmarks")
    return found


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` run on one CPU with taskset, when ``cpu`` is given, taskset exists and so does the CPU."""
    if cpu is None or shutil.which("taskset") is None or cpu >= (os.cpu_count() or 1):
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def pinning() -> str:
    """How processes are placed, for the results' header."""
    if shutil.which("taskset") is None:
        return "not pinned (no taskset)"
    if (os.cpu_count() or 1) < 2:
        return "not pinned (one CPU)"
    return f"server on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU} (taskset)"


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    connections: int,
    duration: int,
    threads: int = 1,
    cpu: int | None = LOAD_CPU,
    timeout: int = 10,
) -> Measurement:
    """Drive ``url`` for ``duration`` seconds with the requests of ``requests_file``. ``timeout`` (seconds)
    is wrk's per-request limit; slower answers count as timeout errors instead of latencies."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-") as script:
        script.write(LUA)
        script.flush()
        argv = [wrk_path(), "-t", str(threads), "-c", str(connections), "-d", f"{duration}s"]
        argv += ["--timeout", f"{timeout}s", "-s", script.name, url, "--", str(requests_file), str(threads)]
        done = subprocess.run(
            pinned(argv, cpu), capture_output=True, text=True, timeout=duration + 120, check=False
        )
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout, connections)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any OTEL_* or GATEWAY_* setting (the defaults), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GATEWAY_"))}
    return {**env, **(extra or {})}


def floor_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.floor", "--port", str(port)]


def gateway_argv(
    routes: Path, db: Path, port: int, *, log_level: str = "info", log_format: str = "json"
) -> list[str]:
    return [
        *(sys.executable, "-m", "gateway", "serve", "--routes", str(routes), "--db", str(db)),
        *("--port", str(port), "--log-level", log_level, "--log-format", log_format),
    ]


def collector_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.collector", "--port", str(port)]


def get_json(port: int, path: str, timeout: float = 2.0) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise BenchError(f"GET {path} on port {port} answered {response.status}")
        return json.loads(body)
    finally:
        conn.close()


class Server:
    """A process under test: started (pinned to ``cpu``) by :meth:`start`, ready once GET /healthz answers
    200, stopped with SIGTERM by :meth:`stop`. Its stdout and stderr go to ``log``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        cpu: int | None = SERVER_CPU,
    ) -> None:
        self.argv, self.port, self.log, self.cpu = list(argv), port, log, cpu
        self.env = dict(env) if env is not None else clean_env()
        self.process: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def name(self) -> str:
        return self.argv[2] if self.argv[1:2] == ["-m"] else self.argv[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 30.0) -> Self:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                pinned(self.argv, self.cpu), cwd=ROOT, env=self.env, stdout=out, stderr=out
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                get_json(self.port, "/healthz", timeout=1.0)
                return self
            except (OSError, BenchError, ValueError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(
                        f"{self.url}/healthz not ready in {ready_timeout:.0f} s:\n{self.tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; returns the exit code (negative: a signal)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        return self.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def deliveries_needed(duration: int, rate: float = 4000.0) -> int:
    """Deliveries for a run of ``duration`` seconds that cannot run out below ``rate`` req/s (about twice
    the floor on this machine, LIMITS.md)."""
    return math.ceil(duration * rate)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("target", choices=["floor", "gateway"])
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=int, default=10, help="seconds")
    parser.add_argument("--routed", action="store_true", help="gateway: route pushes to a no-op task")
    parser.add_argument("--log-level", default="warning", help="gateway: --log-level (default warning)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        requests = deliveries.write_deliveries(work / "deliveries.txt", deliveries_needed(args.duration))
        routes = deliveries.write_config(work, routed=args.routed)
        port = free_port()
        if args.target == "floor":
            command = floor_argv(port)
        else:
            command = gateway_argv(routes, work / "gateway.db", port, log_level=args.log_level)
        with Server(command, port=port, log=work / "server.log") as server:
            result = run_wrk(server.url + "/", requests, connections=args.connections, duration=args.duration)
        print(json.dumps({"target": args.target, "pinning": pinning(), **result.as_dict()}, indent=2))
        if server.returncode:
            print(f"the server exited with {server.returncode}:\n{server.tail()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
