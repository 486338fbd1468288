"""A flame graph of the gateway under load: ``gateway serve`` pinned to one CPU, wrk on the other driving
signed 1 KiB GitHub pushes, and py-spy (the ``bench`` extra) sampling the server meanwhile. Issue 21 asks for
one of the hot path before and after each change, committed in docs/img/. I/O: processes, sockets, files.

Run from the repository: ``python -m bench.flame [--executor off] [--routed] [-c 50] [-d 10] --out FILE.svg``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench import deliveries
from bench.load import (
    BenchError,
    Server,
    deliveries_needed,
    free_port,
    gateway_argv,
    pinning,
    run_wrk,
)

RATE = 200  # samples a second: enough for a 10 s picture, little enough to leave the server its CPU


def py_spy_argv(pid: int, out: Path, duration: int, *, rate: int = RATE) -> list[str]:
    """py-spy recording ``pid`` for ``duration`` seconds into the SVG ``out``, without pausing it
    (--nonblocking: a sample reads the interpreter's memory while it runs), every thread, idle frames left
    out (they are the event loop waiting, not work)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return [
        *(spy, "record", "--pid", str(pid), "--output", str(out), "--format", "flamegraph"),
        *("--duration", str(duration), "--rate", str(rate), "--nonblocking", "--threads"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.flame", description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="the SVG to write")
    parser.add_argument("-c", "--connections", type=int, default=50)
    parser.add_argument("-d", "--duration", type=int, default=10, help="seconds of load, all sampled")
    parser.add_argument("--routed", action="store_true", help="route pushes to a no-op task (a run each)")
    parser.add_argument("--executor", choices=["on", "off"], default="on", help="gateway serve --executor")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-flame-") as tmp:
        work = Path(tmp)
        requests = deliveries.write_deliveries(work / "deliveries.txt", deliveries_needed(args.duration + 2))
        routes = deliveries.write_config(work, routed=args.routed)
        port = free_port()
        command = [*gateway_argv(routes, work / "gateway.db", port, log_level="warning")]
        command += ["--executor", args.executor]
        with Server(command, port=port, log=work / "server.log") as server:
            if server.process is None:
                raise BenchError("the gateway did not start")
            spy = subprocess.Popen(py_spy_argv(server.process.pid, args.out, args.duration + 1))
            try:
                result = run_wrk(
                    server.url + "/", requests, connections=args.connections, duration=args.duration
                )
            finally:
                spy.wait(timeout=args.duration + 60)
        summary = {"pinning": pinning(), "executor": args.executor, "routed": args.routed, **result.as_dict()}
        print(json.dumps(summary, indent=2))
        if spy.returncode:
            print(f"py-spy exited with {spy.returncode}", file=sys.stderr)
            return 1
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
