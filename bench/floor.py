"""The floor server: the gateway's HTTP stack (Hypercorn, or uvicorn with ``--server uvicorn``, with
gateway/server.py's settings; Starlette) and a handler that reads the body and answers 202, nothing else.
What no gateway on this stack can beat.

I/O: a listening socket. Run: ``python -m bench.floor --port 8000``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.web.listen import SERVERS, Listener, loop_factory, run_server


async def hook(request: Request) -> Response:
    await request.body()  # every receiver reads the body; the gateway reads it exactly once too
    return Response(status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/{path:path}", hook, methods=["POST"]),
    ]
)


async def run(served: Any, host: str, port: int, server: str = "hypercorn") -> None:
    """Serve ``served`` as the gateway serves its app (``web.listen.run_server``) until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_server(served, Listener(host, port, server), stop)


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line every benchmark server shares: ``--host``, ``--port``, ``--server``."""
    made = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    made.add_argument("--host", default="127.0.0.1")
    made.add_argument("--port", type=int, default=8000)
    made.add_argument("--server", choices=SERVERS, default="hypercorn", help="HTTP server (hypercorn)")
    return made


def serve_until_stopped(served: Any, args: argparse.Namespace) -> int:
    """Run :func:`run` on the loop the server wants (uvloop for uvicorn, as ``gateway serve`` does)."""
    with asyncio.Runner(loop_factory=loop_factory(args.server)) as runner:
        runner.run(run(served, args.host, args.port, args.server))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return serve_until_stopped(app, parser("python -m bench.floor", __doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
