"""The HTTP servers: Hypercorn's and uvicorn's settings (the same limits under both), the event loop each
runs on, serving one listener until a stop event, and checking an address is free. I/O: sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from gateway.errors import GatewayError

if TYPE_CHECKING:
    import uvicorn

SERVERS = ("hypercorn", "uvicorn")
UVICORN_MISSING = (
    "--server uvicorn needs uvicorn, httptools and uvloop, which are not installed: "
    "pip install 'hookgate[uvicorn]' (or use --server hypercorn)"
)
KEEP_ALIVE = 75  # seconds; longer than common load-balancer idle timeouts
# Slow senders: a request head must be complete KEEP_ALIVE seconds after the connection opened or the last
# answer ended (Hypercorn's idle timer runs until the head is parsed; uvicorn gets the same below), the body
# within hooks.BODY_TIMEOUT of the head, and no read of a request may wait more than READ_TIMEOUT.
READ_TIMEOUT = KEEP_ALIVE + 5  # above KEEP_ALIVE: an idle keep-alive connection is KEEP_ALIVE's to close
HEAD_LIMIT = 64 * 1024  # request line + headers; bigger is refused by the server (the body's limit is ours)
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Listener:
    """One address to serve, and the HTTP server that serves it."""

    host: str = "127.0.0.1"
    port: int = 8000
    server: str = "hypercorn"  # or "uvicorn" (httptools + uvloop, the `uvicorn` extra)
    shutdown_grace: float = 10.0  # seconds in-flight requests get to finish once `stop` is set


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def hypercorn_config(listener: Listener) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [bind_address(listener.host, listener.port)]
    hc.accesslog = None  # one structured line per request is the app's job, not the server's
    hc.errorlog = logging.getLogger("hypercorn.error")  # through our handler and format, not its own
    hc.graceful_timeout = listener.shutdown_grace
    hc.keep_alive_timeout = KEEP_ALIVE
    hc.read_timeout = math.ceil(READ_TIMEOUT)
    # h11 refuses a buffer *over* its limit while the head is incomplete; Hypercorn reads 64 KiB at a time,
    # so with HEAD_LIMIT itself a 70 KiB head would pass in two reads.
    hc.h11_max_incomplete_size = HEAD_LIMIT - 1
    return hc


def loop_factory(server: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``server`` runs on, for ``asyncio.Runner(loop_factory=...)``: uvloop for uvicorn, the
    default loop for Hypercorn. Raises GatewayError for an unknown server or a missing `uvicorn` extra."""
    if server not in SERVERS:
        raise GatewayError(f"unknown server {server!r} (--server, GATEWAY_SERVER): choose one of {SERVERS}")
    if server == "hypercorn":
        return None
    try:
        import httptools  # noqa: F401  (uvicorn's fast HTTP parser, imported to see that it is there)
        import uvicorn  # noqa: F401
        import uvloop
    except ImportError:
        raise GatewayError(UVICORN_MISSING) from None
    return uvloop.new_event_loop


def uvicorn_config(app: Any, listener: Listener) -> uvicorn.Config:
    """uvicorn's settings matching :func:`hypercorn_config`: httptools, no lifespan, no access log, its error
    log through our handler, the same keep-alive, head limit and graceful timeout."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        loop="uvloop",  # for the record: the caller's asyncio.Runner(loop_factory=loop_factory(...)) runs it
        http=_bounded_httptools(),
        lifespan="off",  # serve() opens and closes what the app needs
        log_config=None,  # uvicorn.error propagates to our handler; uvicorn configures no logging of its own
        access_log=False,  # one structured line per request is the app's job, not the server's
        proxy_headers=False,  # as Hypercorn: the client is the peer, X-Forwarded-For is not trusted
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=math.ceil(listener.shutdown_grace),
        h11_max_incomplete_event_size=HEAD_LIMIT - 1,  # as Hypercorn's, were uvicorn's h11 protocol used
    )


def _head_read(data: bytes) -> tuple[int, int]:
    """How many bytes of a read belong to a request head, and the most a head may have had once they are
    counted: HEAD_LIMIT with its end in this read, one less while it is still incomplete (as h11 counts)."""
    end = data.find(b"\r\n\r\n")
    return (len(data), HEAD_LIMIT - 1) if end < 0 else (end + 4, HEAD_LIMIT)


def _bounded_httptools() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with Hypercorn's (h11's) bounds on a request head, which httptools
    lacks: 431 for a head past HEAD_LIMIT bytes (counted per read, before parsing), and
    the connection closed when a head is not complete KEEP_ALIVE seconds after the connection opened or the
    last answer ended (uvicorn's own keep-alive timer stops at the first byte, so a trickled head or a
    silent connection would otherwise be held for ever)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Bounded(HttpToolsProtocol):
        head = 0  # bytes of the current request's head read so far; -1 while its body is read
        deadline: asyncio.TimerHandle | None = None

        def _await_head(self) -> None:
            self._cancel_deadline()
            # Closing a closing transport is harmless; connection_lost cancels the timer anyway.
            self.deadline = self.loop.call_later(KEEP_ALIVE, self.transport.close)

        def _cancel_deadline(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_deadline()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:
            self.head = -1
            self._cancel_deadline()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self.head = 0  # what follows is the next request's head

        def on_response_complete(self) -> None:
            super().on_response_complete()  # closing a closing transport again is harmless
            if self.cycle.response_complete and self.cycle.more_body:
                # Answered before its body arrived (413, 408): the rest of the connection is that body, not a
                # next request; close it, as h11 (Hypercorn) does. uvicorn's keep-alive timer would not: each
                # trickled byte cancels it.
                self.transport.close()
            elif self.head >= 0:  # the next head is not complete yet: bound it like the first
                self._await_head()

        def data_received(self, data: bytes) -> None:
            # Counted before httptools parses the read: it would take a whole head of any size at once. A
            # terminator split over two reads counts the second read whole.
            if self.head >= 0:
                count, limit = _head_read(data)
                self.head += count
                if self.head > limit:
                    self.head = -1
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                    return
            super().data_received(data)

    return Bounded


def run_server(app: Any, listener: Listener, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """Serve ``app`` on ``listener`` until ``stop`` is set, then drain in-flight requests for up to
    ``listener.shutdown_grace`` seconds. SIGTERM/SIGINT are the caller's to handle."""
    if listener.server == "uvicorn":
        return _uvicorn(uvicorn_config(app, listener), stop)
    return hypercorn_serve(app, hypercorn_config(listener), shutdown_trigger=stop.wait)


async def _uvicorn(config: uvicorn.Config, stop: asyncio.Event) -> None:
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the process's SIGTERM/SIGINT set `stop` (serve() installs them); uvicorn must not

    logging.getLogger("uvicorn.error").addFilter(_plain)
    server = Server(config)  # its main loop sees should_exit within 0.1 s, then drains like Hypercorn
    watcher = asyncio.ensure_future(stop.wait())
    watcher.add_done_callback(lambda _: setattr(server, "should_exit", True))
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when it cannot bind, after logging why
        raise OSError(f"uvicorn could not listen on {bind_address(config.host, config.port)}") from None
    finally:
        watcher.cancel()


def _plain(record: logging.LogRecord) -> bool:
    record.__dict__.pop("color_message", None)  # uvicorn's ANSI twin of the message: not a field of ours
    return True


def check_free(host: str, port: int) -> None:
    """Refuse at once, in one line, an address this process cannot listen on (the server would fail later)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Hypercorn binds
            probe.bind(address)
    except OSError as exc:
        raise GatewayError(
            f"cannot listen on {bind_address(host, port)}: {exc.strerror or exc}; is another process "
            "using it? choose another --port (or --admin-port)"
        ) from None
