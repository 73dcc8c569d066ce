"""A throw-away HAProxy in front of service replicas (Debian's ``haproxy`` package).

``Haproxy(servers).start()`` renders ``docker/haproxy/haproxy.cfg.template`` into a new
temporary folder (the frontend on a free loopback port, one ``server`` line per replica, the admin
socket in that folder), checks it with ``haproxy -c`` and runs ``haproxy -db`` as a plain
foreground process, its log (one line per request, see the template) in ``haproxy.log`` there.
``servers()`` reads the replicas' states from the admin socket (``show stat``);
``StateWatcher`` polls them and records every change with its time. ``stop()`` ends the process
by its pid and removes the folder.

Install it with ``make haproxy-deps`` (apt-get, as root).
"""

from __future__ import annotations

import csv
import io
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tests.conftest import REPO_ROOT

TEMPLATE = REPO_ROOT / "docker" / "haproxy" / "haproxy.cfg.template"
BACKEND = "replicas"


class HaproxyUnavailable(RuntimeError):
    """No haproxy binary, or it would not start."""


def find_haproxy() -> str:
    found = shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(p).exists()), None
    )
    if found is None:
        raise HaproxyUnavailable("no haproxy: run `make haproxy-deps`")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ServerState:
    """One replica as HAProxy sees it (a row of ``show stat``)."""

    name: str
    status: str  # UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (coming up), MAINT, ...
    check: str  # the last check's status, e.g. L7OK, L4CON
    sessions: int  # requests (sessions) sent to it so far
    current: int  # its sessions now

    @property
    def up(self) -> bool:
        return self.status.startswith("UP")


@dataclass(frozen=True)
class LogLine:
    """One request in HAProxy's log (the template's ``log-format``)."""

    accepted: float  # epoch seconds
    request_id: str
    method: str
    uri: str
    server: str  # <NOSRV> when HAProxy answered itself
    status: int
    retries: int
    redispatched: bool
    termination: str
    total_ms: int

    @property
    def finished(self) -> float:
        return self.accepted + max(self.total_ms, 0) / 1000

    @classmethod
    def parse(cls, line: str) -> LogLine | None:
        parts = line.split()
        if len(parts) != 10 or "/" not in parts[4]:
            return None
        try:
            timers = parts[8].split("/")
            return cls(
                accepted=float(parts[0]),
                request_id=parts[1],
                method=parts[2],
                uri=parts[3],
                server=parts[4].split("/", 1)[1],
                status=int(parts[5]),
                retries=int(parts[6].lstrip("+")),
                redispatched=parts[6].startswith("+"),
                termination=parts[7],
                total_ms=int(timers[-1]),
            )
        except (ValueError, IndexError):
            return None


class Haproxy:
    def __init__(self, servers: dict[str, int], host: str = "127.0.0.1") -> None:
        """``servers``: replica name -> its port on ``host``."""
        self.binary = find_haproxy()
        self.host = host
        self.servers_ports = dict(servers)
        base = tempfile.gettempdir()
        # Short: a Unix socket path may hold at most ~107 bytes.
        self.root = Path(
            tempfile.mkdtemp(prefix="lungseg-haproxy-", dir=base if len(base) < 40 else "/tmp")
        )
        self.config = self.root / "haproxy.cfg"
        self.socket = self.root / "admin.sock"
        self.log = self.root / "haproxy.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def render(self) -> str:
        lines = "\n".join(
            f"    server {name} {self.host}:{port} check"
            for name, port in self.servers_ports.items()
        )
        return Template(TEMPLATE.read_text()).substitute(
            bind=f"{self.host}:{self.port}", stats_socket=str(self.socket), servers=lines
        )

    def start(self, timeout_s: float = 20) -> Haproxy:
        self.config.write_text(self.render())
        check = subprocess.run(
            [self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=30
        )
        if check.returncode != 0:
            self.remove()
            raise HaproxyUnavailable(f"haproxy -c refused the config: {check.stdout}{check.stderr}")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = self.log.read_text(errors="replace")
                self.remove()
                raise HaproxyUnavailable(f"haproxy exited ({self.process.returncode}): {text}")
            try:
                self.command("show info")
                with socket.create_connection((self.host, self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HaproxyUnavailable(f"haproxy not listening after {timeout_s} s")

    def command(self, line: str) -> str:
        """One command on the admin socket; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def servers(self) -> dict[str, ServerState]:
        """The replicas' states now."""
        text = self.command("show stat").lstrip("# ")
        states = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") != BACKEND or row.get("svname") in ("BACKEND", "FRONTEND"):
                continue
            states[row["svname"]] = ServerState(
                name=row["svname"],
                status=row.get("status", ""),
                check=row.get("check_status", ""),
                sessions=int(row.get("stot") or 0),
                current=int(row.get("scur") or 0),
            )
        return states

    def requests(self) -> list[LogLine]:
        """Every request logged so far."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [parsed for line in text.splitlines() if (parsed := LogLine.parse(line))]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM to its pid: a hard stop
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class StateWatcher:
    """Polls ``haproxy.servers()`` every ``every_s`` in a thread and keeps each change of a
    replica's state as ``(epoch seconds, name, status)``."""

    def __init__(self, haproxy: Haproxy, every_s: float = 0.05) -> None:
        self.haproxy = haproxy
        self.every_s = every_s
        self.changes: list[tuple[float, str, str]] = []
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="haproxy-watch", daemon=True)

    def __enter__(self) -> StateWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                states = self.haproxy.servers()
            except OSError:
                states = {}
            stamp = time.time()
            with self._lock:
                for name, state in states.items():
                    if self._last.get(name) != state.status:
                        self._last[name] = state.status
                        self.changes.append((stamp, name, state.status))
            self._stop.wait(self.every_s)

    def status(self, name: str) -> str:
        with self._lock:
            return self._last.get(name, "")

    def wait_for(self, name: str, up: bool, after: float, timeout_s: float) -> float | None:
        """The time ``name`` was first seen fully UP (``up``) or DOWN after ``after``; None when
        it was not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for stamp, server, status in self.changes:
                    if server == name and stamp >= after and status == ("UP" if up else "DOWN"):
                        return stamp
            time.sleep(self.every_s)
        return None
