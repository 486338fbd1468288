"""A real PostgreSQL server for the tests and the benchmarks: ``initdb`` into a temporary directory, ``pg_ctl
start`` on a free 127.0.0.1 port, no system service, no mocks. I/O: processes, files, sockets.

The binaries are the newest ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package), else
``initdb``, ``pg_ctl`` and ``postgres`` on PATH. PostgreSQL refuses to run as root: as root, ``initdb`` and
``pg_ctl`` run as the ``postgres`` system user (``nobody`` when there is none) through ``runuser`` (or
``setpriv``), and that user owns the directory. The server runs with ``fsync`` and ``synchronous_commit`` on,
as in production; its superuser is ``postgres``, trusted on loopback:
``postgresql://postgres@127.0.0.1:PORT/DBNAME``.

``GATEWAY_TEST_POSTGRES=postgresql://user:password@host:port/dbname`` makes the fixtures use that running
server instead of starting one (its user needs CREATEDB): each test still gets a fresh database of its own on
it (``gateway_test_<hex>``), dropped after. Tests that kill or restart PostgreSQL always start a server of
their own (the ``start_postgres`` fixture), so they need the binaries either way.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "GATEWAY_TEST_POSTGRES"
PREFIX = "hookgate-pg-"  # the temporary directories; one left by a dead process is swept at the next start
SUPERUSER = "postgres"
SETTINGS = {"fsync": "on", "synchronous_commit": "on", "max_connections": "200"}
INSTALL = "apt-get install postgresql"


class PostgresMissing(RuntimeError):
    """No PostgreSQL binaries on this machine."""


class PostgresFailed(RuntimeError):
    """initdb or pg_ctl failed; the message holds its output and the tail of the server's log."""


@dataclass(frozen=True, slots=True)
class Binaries:
    bin: Path
    version: str  # the major version, from the directory or ``postgres --version``

    @property
    def initdb(self) -> Path:
        return self.bin / "initdb"

    @property
    def pg_ctl(self) -> Path:
        return self.bin / "pg_ctl"


def find_binaries(root: str = "/usr/lib/postgresql") -> Binaries:
    """The newest ``root/*/bin`` holding initdb, pg_ctl and postgres, else the three on PATH."""
    names = ("initdb", "pg_ctl", "postgres")

    def major(path: str) -> tuple[int, ...]:
        version = Path(path).parent.name
        return tuple(int(part) for part in version.split(".") if part.isdigit())

    for found in sorted(glob.glob(f"{root}/*/bin"), key=major, reverse=True):
        if all(os.access(Path(found, name), os.X_OK) for name in names):
            return Binaries(Path(found), Path(found).parent.name)
    on_path = [shutil.which(name) for name in names]
    if all(on_path):
        postgres = Path(str(on_path[2])).resolve()
        out = subprocess.run([postgres, "--version"], capture_output=True, text=True, timeout=30).stdout
        return Binaries(postgres.parent, out.split()[-1].split(".")[0] if out else "?")
    missing = ", ".join(name for name, path in zip(names, on_path, strict=True) if not path)
    raise PostgresMissing(
        f"PostgreSQL is not installed: no {root}/*/bin and no {missing} on PATH. The tests start a real "
        f"PostgreSQL server of their own: `{INSTALL}` (Debian/Ubuntu; .ci/run does it), or point them at a "
        f"running server with {ENV}=postgresql://user@host:port/dbname"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_database(dsn: str, dbname: str) -> str:
    """``dsn`` (a postgresql:// URL) naming database ``dbname`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def masked(dsn: str) -> str:
    """``dsn`` without its password, for messages and reprs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


class Databases(Protocol):
    """What the fixtures need of a server: ours (PostgresServer) or a running one (ExternalPostgres)."""

    def dsn(self, dbname: str = ...) -> str: ...
    def ensure_running(self) -> None: ...


def create_database(server: Databases, name: str) -> str:
    """``CREATE DATABASE name TEMPLATE template0`` on ``server``; returns its DSN."""
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    return server.dsn(name)


def drop_database(server: Databases, name: str) -> None:
    """Drop ``name``, closing whatever connection a test left open on it."""
    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(server: Databases) -> Iterator[str]:
    """A new empty database on ``server`` for the ``with`` block, dropped after; yields its DSN."""
    server.ensure_running()
    name = f"gateway_test_{uuid.uuid4().hex[:12]}"
    dsn = create_database(server, name)
    try:
        yield dsn
    finally:
        server.ensure_running()  # a test that killed the server and failed before restarting it
        drop_database(server, name)


class ExternalPostgres:
    """A running server named by a URL (``GATEWAY_TEST_POSTGRES``); this suite neither starts nor stops it."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{ENV}={masked(url)!r}: expected a URL like postgresql://user@host:5432/dbname")
        self.url = url

    def __repr__(self) -> str:
        return f"ExternalPostgres({masked(self.url)!r})"

    def dsn(self, dbname: str = "") -> str:
        return with_database(self.url, dbname) if dbname else self.url

    def create_database(self, name: str) -> str:
        return create_database(self, name)

    def ensure_running(self) -> None:
        """Nothing to do: a server we did not start is not ours to restart."""

    def kill(self) -> None:
        raise PostgresFailed(
            f"{self!r} was not started by the tests: use the start_postgres fixture to kill one"
        )

    def restart(self) -> None:
        raise PostgresFailed(f"{self!r} was not started by the tests: use the start_postgres fixture")


class PostgresServer:
    """One PostgreSQL server of our own in a temporary directory (data/, sock/, log): ``start()``, ``dsn()``,
    ``create_database()``, ``kill()`` (SIGKILL of the postmaster), ``restart()`` (same port, same data),
    ``stop()`` (stops it and removes the directory). Also a context manager."""

    def __init__(
        self,
        *,
        binaries: Binaries | None = None,
        settings: Mapping[str, str] | None = None,
        user: str | None = None,
        base: Path | None = None,
    ) -> None:
        self.binaries = binaries or find_binaries()
        self.settings = {**SETTINGS, **(settings or {})}
        self.user = user or run_as_user()
        self.parent = base or Path(tempfile.gettempdir())
        self.dir: Path | None = None
        self.port = 0

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, dir={self.dir}, version={self.binaries.version})"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def data(self) -> Path:
        assert self.dir is not None, "the server was never started"
        return self.dir / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        return create_database(self, name)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """initdb into a new directory, then start the server on a free loopback port and wait for it."""
        sweep_stale(self.parent)
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.parent))
        (self.dir / "owner").write_text(str(os.getpid()))
        (self.dir / "sock").mkdir()
        self._own(self.dir, self.dir / "sock")
        self._run(
            [
                self.binaries.initdb,
                "-D",
                self.data,
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            "initdb",
        )
        for attempt in range(3):  # the free port may be taken between choosing it and binding it
            self.port = free_port()
            try:
                self._pg_ctl_start()
                return self
            except PostgresFailed:
                if attempt == 2:
                    raise
        return self

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (if it still runs), then remove the directory."""
        if self.dir is None:
            return
        if self.running:
            self._run([self.binaries.pg_ctl, "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"], "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; returns once it and its backends are gone."""
        pid = self.pid
        if pid is None:
            return
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        # The backends notice the postmaster's death and exit by themselves; a restart must wait for them,
        # since PostgreSQL refuses to start while they still hold the old shared memory.
        if not _wait_gone([pid, *children], 15.0):
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            _wait_gone(children, 5.0)

    def restart(self) -> None:
        """Stop it if it runs (fast), start it again on the same port and data (crash recovery if killed)."""
        if self.running:
            self._run([self.binaries.pg_ctl, "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop"], "stop")
        self._pg_ctl_start()

    def ensure_running(self) -> None:
        if self.dir is not None and not self.running:
            self.restart()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (a zombie counts as gone)."""
        if self.dir is None:
            return None
        pid = _lock_pid(self.data / "postmaster.pid")
        return pid if pid is not None and _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def server_version(self) -> str:
        with psycopg.connect(self.dsn(), connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    # -- helpers -------------------------------------------------------------------------------------------

    def _pg_ctl_start(self) -> None:
        assert self.dir is not None
        for lock in (self.data / "postmaster.pid", self.dir / "sock" / f".s.PGSQL.{self.port}.lock"):
            # The lock files of a killed postmaster. PostgreSQL removes stale ones itself, but it takes a
            # zombie (killed, not yet reaped: pg_ctl leaves it to init, which may reap it late) for a live
            # server and refuses to start. A zombie holds no memory and no socket: its files are stale.
            pid = _lock_pid(lock)
            if pid is not None and not _alive(pid):
                lock.unlink()
        options = [f"-h 127.0.0.1 -p {self.port} -k {self.dir / 'sock'}"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        command = [self.binaries.pg_ctl, "-D", self.data, "-l", self.dir / "log", "-w", "-t", "60"]
        self._run([*command, "-o", " ".join(options), "start"], "start")
        deadline = time.monotonic() + 30
        while True:  # pg_ctl -w saw it ready; make sure it accepts our connections too
            try:
                with psycopg.connect(self.dsn(), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _run(self, command: Sequence[object], what: str) -> None:
        argv = [str(part) for part in command]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}
        done = subprocess.run(as_user(self.user, argv), capture_output=True, text=True, env=env, timeout=120)
        if done.returncode != 0:
            log = ""
            if self.dir is not None and (self.dir / "log").exists():
                log = "\n--- server log (tail) ---\n" + "\n".join(
                    (self.dir / "log").read_text(errors="replace").splitlines()[-20:]
                )
            raise PostgresFailed(
                f"PostgreSQL {what} failed (exit {done.returncode}) in {self.dir}: {' '.join(argv)}\n"
                f"{done.stdout}{done.stderr}{log}"
            )

    def _own(self, *paths: Path) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)


# -- root, processes -------------------------------------------------------------------------------------


def run_as_user() -> str:
    """Who runs the server: ourselves; as root ``postgres`` (Debian's package makes it), else ``nobody``."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresFailed("running as root with neither a `postgres` nor a `nobody` user to run PostgreSQL as")


def as_user(user: str, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` when we are root (PostgreSQL refuses to run as root), else as is."""
    if os.geteuid() != 0:
        return argv
    if runuser := shutil.which("runuser"):
        return [runuser, "-u", user, "--", *argv]
    if setpriv := shutil.which("setpriv"):
        entry = pwd.getpwnam(user)
        return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups", "--", *argv]
    raise PostgresFailed(
        "running as root without runuser or setpriv (util-linux) to run PostgreSQL as a user"
    )


def _lock_pid(lock: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file (postmaster.pid, .s.PGSQL.PORT.lock)."""
    try:
        return int(lock.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _state(pid: int) -> str | None:
    """The process's state letter (``Z`` for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _state(pid) not in (None, "Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def sweep_stale(parent: Path) -> None:
    """Stop and remove the servers left in ``parent`` by test processes that died without stopping them."""
    for found in parent.glob(f"{PREFIX}*"):
        try:
            owner = int((found / "owner").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        pid = _lock_pid(found / "data" / "postmaster.pid")
        with contextlib.suppress(OSError):
            if pid is not None and _alive(pid) and str(found) in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
                _wait_gone([pid], 5.0)
        shutil.rmtree(found, ignore_errors=True)


@contextlib.contextmanager
def session_server(environ: Mapping[str, str]) -> Iterator[PostgresServer | ExternalPostgres]:
    """The suite's server: the one ``GATEWAY_TEST_POSTGRES`` names, else one of ours, stopped at the end."""
    if url := environ.get(ENV):
        yield ExternalPostgres(url)
        return
    with PostgresServer() as server:
        yield server
