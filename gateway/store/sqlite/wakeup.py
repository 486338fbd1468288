"""Wake-ups between processes sharing one database file, so runs committed by one (`gateway replay`, `rerun`,
a bulk job) start in another (`gateway serve`) at once, not at its next poll.

Each process that runs tasks listens on a datagram socket of its own, in a directory named after the
database's real path; a process that commits new runs sends one byte to every socket there. A wake-up carries
no data and losing one is harmless (listeners still poll): it only says "look now". Unix only. I/O: sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gateway.store")

_PING = b"!"


def wake_dir(database: str) -> Path:
    """Where the listeners of ``database`` have their sockets: short (a socket path holds 107 bytes), private
    to this user, and the same for every process that opens the file by any name (symlinks resolved)."""
    real = os.path.realpath(database)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"hookgate-{os.getuid()}-{digest}"


def _private(directory: Path) -> bool:
    """Whether ``directory`` is ours alone: created by this user, writable by no one else."""
    try:
        info = directory.lstat()
    except FileNotFoundError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


class WakeUps:
    """The wake-ups of one database: :meth:`listen` to be woken, :meth:`notify` to wake the others."""

    def __init__(self, database: str) -> None:
        self.directory = wake_dir(database)
        self._sock: socket.socket | None = None
        self._own: str | None = None  # our own socket's name: never woken by ourselves
        self._sender: socket.socket | None = None
        self._peers: list[str] = []
        self._seen: int | None = None  # the directory's mtime (ns) when _peers was read

    def listen(self, loop: asyncio.AbstractEventLoop, woken: Callable[[], None]) -> bool:
        """Call ``woken()`` on ``loop`` whenever another process notifies. False (and a log line) when it
        cannot listen: the caller then relies on its poll alone."""
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            if not _private(self.directory):
                log.warning("wake-ups off: %s is not a private directory of this user", self.directory)
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            name = f"{os.getpid()}-{os.urandom(4).hex()}.sock"
            sock.bind(str(self.directory / name))
            sock.setblocking(False)
        except OSError as exc:
            log.warning("wake-ups off (%s): runs committed by other processes start at the next poll", exc)
            return False
        self._sock, self._own = sock, name

        def readable() -> None:
            with contextlib.suppress(OSError):  # drain every datagram: one wake-up for the lot
                while sock.recv(16):
                    pass
            woken()

        loop.add_reader(sock.fileno(), readable)
        return True

    def notify(self) -> int:
        """Wake every other listener of this database; how many were reached. Never raises, never blocks."""
        peers = self._listeners()
        if not peers:
            return 0
        if self._sender is None:
            try:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            except OSError:
                return 0
        reached = 0
        for name in peers:
            try:
                self._sender.sendto(_PING, str(self.directory / name))
                reached += 1
            except BlockingIOError:  # its queue is full: it has wake-ups pending already
                reached += 1
            except OSError as exc:
                if exc.errno in (
                    errno.ECONNREFUSED,
                    errno.ENOENT,
                ):  # a listener that died without cleaning up
                    with contextlib.suppress(OSError):
                        (self.directory / name).unlink()
                    self._seen = None
        return reached

    def _listeners(self) -> list[str]:
        try:
            mtime = self.directory.stat().st_mtime_ns
        except OSError:
            return []
        if mtime != self._seen:  # a listener came or went: read the directory again
            if not _private(self.directory):
                return []
            self._peers = [n for n in os.listdir(self.directory) if n.endswith(".sock") and n != self._own]
            self._seen = mtime
        return self._peers

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._sock is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._sock.fileno())
            self._sock.close()
            with contextlib.suppress(OSError):
                (self.directory / str(self._own)).unlink()
            self._sock = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
