"""The floor server: the gateway's HTTP stack (Hypercorn with gateway/server.py's settings, Starlette) and a
handler that reads the body and answers 202, nothing else. What no gateway on this stack can beat.

I/O: a listening socket. Run: ``python -m bench.floor --port 8000``; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from hypercorn.asyncio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.server import ServeOptions, hypercorn_config


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


async def run(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    config = hypercorn_config(ServeOptions(db=Path("unused"), host=host, port=port))
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
