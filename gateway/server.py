"""The process: lock and open the database, serve the app with Hypercorn and run the executor beside it,
stop cleanly on SIGTERM/SIGINT (drain requests, then running attempts, then close the store).

I/O: sockets, signals, the database file and its lock file.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from gateway.api import create_api
from gateway.app import create_admin_app, create_app
from gateway.auth import AdminKey
from gateway.config import Config
from gateway.errors import GatewayError, StoreError
from gateway.executor import Executor, ExecutorOptions
from gateway.jobs import Worker
from gateway.keyring import Keyring
from gateway.service import Service
from gateway.store import Store

log = logging.getLogger("gateway.server")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: Path
    host: str = "127.0.0.1"
    port: int = 8000
    shutdown_grace: float = 10.0  # seconds in-flight requests get to finish after SIGTERM
    concurrency: int = 100  # runs executing at once
    threads: int = 8  # worker threads for sync tasks
    drain_timeout: float = 30.0  # seconds running attempts get after SIGTERM before being requeued
    admin_key: AdminKey | None = None  # the admin API is served only with a key to check its tokens
    admin_host: str | None = None  # serve the admin API on its own listener (else at /api beside /hooks)
    admin_port: int | None = None


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def hypercorn_config(
    options: ServeOptions, host: str | None = None, port: int | None = None
) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [_bind(host or options.host, port or options.port)]
    hc.accesslog = None  # one structured line per request is the app's job, not the server's
    hc.graceful_timeout = options.shutdown_grace
    hc.keep_alive_timeout = 75  # longer than common load-balancer idle timeouts
    hc.h11_max_incomplete_size = 64 * 1024  # request line + headers; bigger is refused by the server
    return hc


def _check_free(host: str, port: int) -> None:
    """Refuse at once, in one line, an address this process cannot listen on (Hypercorn would fail later, with
    a traceback, after starting the app's lifespan)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Hypercorn binds
            probe.bind(address)
    except OSError as exc:
        raise GatewayError(
            f"cannot listen on {_bind(host, port)}: {exc.strerror or exc}; is another process using it? "
            "choose another --port (or --admin-port)"
        ) from None


@contextmanager
def database_lock(db: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the database: one gateway process per database file.

    Holding it also tells the executor that a run found `executing` at start-up belongs to no live process.
    """
    path = Path(f"{db}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(
                f"another gateway process is already serving {db} (lock {path}); "
                "stop it, or give this one its own --db"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


async def serve(config: Config, options: ServeOptions, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (SIGTERM and SIGINT set it); then drain and close the store."""
    admin = (options.admin_host or options.host, options.admin_port or options.port)
    separate = options.admin_host is not None or options.admin_port is not None
    if options.admin_key is not None and separate and admin == (options.host, options.port):
        raise GatewayError(
            f"--admin-host/--admin-port give {_bind(*admin)}, the address of /hooks too: give the admin API "
            "another port (--admin-port), or set neither to serve /api beside the hooks"
        )
    addresses = [(options.host, options.port)]
    if options.admin_key is not None and separate:
        addresses.append(admin)
    for host, port in addresses:
        _check_free(host, port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with database_lock(options.db):
            await _serve(config, options, stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve(config: Config, options: ServeOptions, stop: asyncio.Event) -> None:
    executor: Executor | None = None

    def wake(runs: object) -> None:
        if executor is not None:
            executor.notify()

    store = await Store.open(options.db, on_commit=wake)
    keyring = Keyring(config.sources.values())
    try:
        executor = Executor(
            store,
            config.tasks,
            ExecutorOptions(
                concurrency=options.concurrency,
                threads=options.threads,
                queues=config.queues,
                drain_timeout=options.drain_timeout,
            ),
        )
        service = Service(store, config)
        worker = Worker(service)
        key = options.admin_key
        api = None if key is None else create_api(service, key, on_job=worker.notify)
        separate = api is not None and (options.admin_port is not None or options.admin_host is not None)
        app = create_app(config, store, keyring=keyring, api=None if separate else api)
        log.info(
            "gateway starting on http://%s with %d source(s), %d route(s), %d task(s), database %s",
            _bind(options.host, options.port),
            len(config.sources),
            len(config.routes),
            len(config.tasks),
            options.db,
        )
        servers = [hypercorn_serve(app, hypercorn_config(options), shutdown_trigger=stop.wait)]  # type: ignore[arg-type]
        if api is None or key is None:
            log.info("admin API off: set GATEWAY_ADMIN_SECRET or --admin-public-key to serve /api")
        elif separate:
            host, port = options.admin_host or options.host, options.admin_port or options.port
            log.info("admin API on http://%s/api (%s tokens)", _bind(host, port), key.algorithm)
            admin = hypercorn_config(options, host, port)
            servers.append(hypercorn_serve(create_admin_app(api), admin, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        else:
            log.info("admin API at /api (%s tokens)", key.algorithm)
        try:
            async with asyncio.TaskGroup() as group:
                for server in servers:
                    group.create_task(server)
                group.create_task(executor.run(stop))
                group.create_task(worker.run(stop))
        except* OSError as failed:  # a listener could not bind: say so in one line, not a traceback
            reason = "; ".join(str(exc) for exc in failed.exceptions)
            raise GatewayError(
                f"cannot listen ({reason}); is another process using the port? choose another --port "
                "or --admin-port"
            ) from None
    finally:
        await keyring.aclose()
        await store.close()
        log.info("gateway stopped; every acknowledged event is on disk")
