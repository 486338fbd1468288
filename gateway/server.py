"""The process: open the store, serve the app with Hypercorn, stop cleanly on SIGTERM/SIGINT.

I/O: sockets, signals, the database file.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from gateway.app import create_app
from gateway.config import Config
from gateway.store import Store

log = logging.getLogger("gateway.server")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_grace: float = 10.0  # seconds in-flight requests get to finish after SIGTERM


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def hypercorn_config(options: ServeOptions) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_bind(options.host, options.port)]
    hc.accesslog = None  # one structured line per request is the app's job, not the server's
    hc.graceful_timeout = options.shutdown_grace
    hc.keep_alive_timeout = 75  # longer than common load-balancer idle timeouts
    hc.h11_max_incomplete_size = 64 * 1024  # request line + headers; bigger is refused by the server
    return hc


async def serve(config: Config, options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (SIGTERM and SIGINT set it); then drain requests and close the store."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = await Store.open(options.db)
    try:
        app = create_app(config, store)
        log.info(
            "gateway listening on http://%s with %d source(s), %d route(s), database %s",
            _bind(options.host, options.port),
            len(config.sources),
            len(config.routes),
            options.db,
        )
        await hypercorn_serve(app, hypercorn_config(options), shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        await store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("gateway stopped; every acknowledged event is on disk")
