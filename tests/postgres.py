"""A throw-away PostgreSQL server for the tests (Debian's ``postgresql`` package).

``PostgresServer.start()`` runs ``initdb`` into a new temporary folder and ``pg_ctl start`` with
the server listening only on a Unix socket in that folder (no TCP), fsync and synchronous commit
off. Started by root it runs as the ``postgres`` system user (the server refuses root); otherwise
as the current user. ``create_database()`` gives each test a database of its own;
``stop()`` ends the server by its pid (``pg_ctl stop -m fast``) and removes the folder.

Install the server with ``make postgres-deps`` (apt-get, as root).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SUPERUSER = "lungseg"
PORT = 5432  # only names the socket file: the socket folder is private to this server


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, no driver, or no unprivileged user to run it as."""


def find_bindir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: on PATH, else Debian's newest
    /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not versions:
        raise PostgresUnavailable("no PostgreSQL server (pg_ctl): run `make postgres-deps`")
    return Path(versions[-1]).parent


class PostgresServer:
    def __init__(self) -> None:
        try:
            import psycopg  # noqa: F401  (the driver the URLs name)
        except ImportError as err:
            raise PostgresUnavailable("psycopg is not installed (pip install -e '.[dev]')") from err
        self.bindir = find_bindir()
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as err:
                raise PostgresUnavailable("running as root and no `postgres` user") from err
            self.user = "postgres"
        # Short: a Unix socket path may hold at most ~107 bytes.
        base = tempfile.gettempdir()
        self.root = Path(
            tempfile.mkdtemp(prefix="lungseg-pg-", dir=base if len(base) < 40 else "/tmp")
        )
        self.data = self.root / "data"
        self.socket_dir = self.root
        self.log = self.root / "server.log"
        self._names = itertools.count()
        self.pid: int | None = None

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {"user": self.user} if self.user else {}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
            **extra,
        )

    def start(self) -> PostgresServer:
        if self.user:
            shutil.chown(self.root, self.user)
        try:
            init = ["-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"]
            self._run("initdb", *init, "--locale=C", "--no-sync")
            options = (
                f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
                f"-p {PORT} -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
            )
        except subprocess.CalledProcessError as err:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            self.remove()
            raise PostgresUnavailable(
                f"PostgreSQL did not start: {err.stderr or err.stdout}\n{log}"
            ) from err
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3, through the Unix socket)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={PORT}"

    def _admin(self, sql: str) -> None:
        import psycopg

        where = {"host": str(self.socket_dir), "port": PORT, "user": SUPERUSER}
        with psycopg.connect(dbname="postgres", autocommit=True, **where) as connection:
            connection.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """A new, empty database; returns its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop it, ending any connection still open to it."""
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.pid is not None:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except subprocess.CalledProcessError:
                os.kill(self.pid, signal.SIGINT)  # pg_ctl could not: a fast shutdown by its pid
            self.pid = None
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
