"""Start the real service in a subprocess, time its start-up, read its memory."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (0.0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class RunningService:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    startup_s: float

    def worker_rss_mib(self) -> list[float]:
        """RSS of each worker process (the server itself when it has no children)."""
        pids = children(self.process.pid) or [self.process.pid]
        return [rss_mib(p) for p in pids]


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout_s} s")


@contextmanager
def running_service(
    env: dict[str, str], log_path: Path, timeout_s: float = 120
) -> Iterator[RunningService]:
    """Run ``python -m service.api`` with ``env`` on a free port until the block ends."""
    port = free_port()
    full_env = {**os.environ, **env, "LUNGSEG_HOST": "127.0.0.1", "LUNGSEG_PORT": str(port)}
    start = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.api"], env=full_env, stdout=log, stderr=log
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s)
            yield RunningService("127.0.0.1", port, process, time.perf_counter() - start)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
