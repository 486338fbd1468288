"""Memory under a flood of forged bodies at the cap: ``gateway serve`` gets N concurrent requests of
``--size`` bytes (10 MiB: the default ``max_body``) with a wrong signature, while an honest sender posts small
signed deliveries. Reports the server's resident memory before, at its peak (VmHWM) and 10 s after, what the
forged requests were answered, and how many honest deliveries were acknowledged. I/O: processes, sockets, temp
files.

Run from the repository: ``python -m bench.memory [--concurrent 40] [--size 10MiB] [--server hypercorn]``
(add ``--body-budget 64MiB`` to pass that flag to serve).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import deliveries
from bench.load import Server, free_port, gateway_argv
from gateway.errors import Problem
from gateway.routes.sizes import parse_size

SETTLE = 10.0  # seconds after the flood before the resident size is read again


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _post(port: int, head: bytes, body: bytes, timeout: float = 60.0) -> int:
    """Send one request whole (head, then the body as fast as the socket takes it); the answer's status, or
    0 when the connection was closed or reset without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused early: the answer may still be readable
            sock.sendall(head + body)
        try:
            answer = sock.recv(4096)
        except OSError:
            return 0
    try:
        return int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def _head(headers: Sequence[tuple[str, str]], size: int) -> bytes:
    lines = [f"POST {deliveries.SOURCE_PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {size}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode()


def flood(port: int, concurrent: int, size: int) -> tuple[Counter[int], Counter[int]]:
    """Post ``concurrent`` forged bodies at once, and honest deliveries meanwhile; the statuses of each."""
    forged_body = b'{"x":"' + b"a" * (size - 8) + b'"}'
    forged_head = _head(
        [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "forged"), ("X-Hub-Signature-256", "sha256=00")],
        len(forged_body),
    )
    forged: Counter[int] = Counter()
    honest: Counter[int] = Counter()
    lock = threading.Lock()

    def forge() -> None:
        status = _post(port, forged_head, forged_body)
        with lock:
            forged[status] += 1

    def send_honest(stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            body = deliveries.push_body(n)
            delivery = str(uuid.uuid4())
            headers = deliveries.github_headers(body, deliveries.SECRET, delivery)
            status = _post(port, _head(headers, len(body)), body)
            honest[status] += 1
            n += 1

    stop = threading.Event()
    honest_thread = threading.Thread(target=send_honest, args=(stop,))
    honest_thread.start()
    threads = [threading.Thread(target=forge) for _ in range(concurrent)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    honest_thread.join()
    return forged, honest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrent", type=int, default=40, help="forged requests sent at once (40)")
    parser.add_argument("--size", default="10MiB", help="bytes of each forged body (10MiB)")
    parser.add_argument("--server", choices=("hypercorn", "uvicorn"), default="hypercorn")
    parser.add_argument("--body-budget", help="passed to gateway serve as --body-budget")
    args = parser.parse_args(argv)
    problems: list[Problem] = []
    size = parse_size(args.size, "--size", problems, 0)
    if problems:
        parser.error(str(problems[0]))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        work = Path(tmp)
        routes = deliveries.write_config(work, routed=False)
        port = free_port()
        argv_ = gateway_argv(routes, work / "gateway.db", port, log_level="warning")
        argv_ += ["--server", args.server]
        if args.body_budget:
            argv_ += ["--body-budget", args.body_budget]
        with Server(argv_, port=port, log=work / "serve.log", cpu=None) as server:
            assert server.process is not None
            pid = server.process.pid
            before = _status(pid)["VmRSS"]
            started = time.monotonic()
            forged, honest = flood(port, args.concurrent, size)
            took = time.monotonic() - started
            peak = _status(pid)["VmHWM"]
            time.sleep(SETTLE)
            after = _status(pid)["VmRSS"]
    result = {
        "server": args.server,
        "concurrent": args.concurrent,
        "size_bytes": size,
        "body_budget": args.body_budget,
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(peak / 1024, 1),
        "rss_after_10s_mib": round(after / 1024, 1),
        "flood_seconds": round(took, 2),
        "forged_statuses": dict(sorted(forged.items())),
        "honest_statuses": dict(sorted(honest.items())),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
