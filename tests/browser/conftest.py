"""Fixtures of the browser tests: the real service in a subprocess and headless Chromium.

Chromium is Debian's (``/usr/bin/chromium``, or ``$LUNGSEG_CHROMIUM``), driven by Playwright for
Python; Playwright's own browser download is never used (no internet). ``make test`` installs
both; where either is missing the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT
from tests.required import required, unavailable

CHROMIUM = Path(os.environ.get("LUNGSEG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the service exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"the service was not ready within 90 s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m service.api`` on a free port with a results database of its own."""
    tmp = tmp_path_factory.mktemp("service")
    port = _free_port()
    env = os.environ | {
        "LUNGSEG_HOST": "127.0.0.1",
        "LUNGSEG_PORT": str(port),
        "LUNGSEG_DATABASE_URL": f"sqlite:///{tmp / 'runs.db'}",
        "LUNGSEG_LOG_LEVEL": "warning",
    }
    log = tmp / "service.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.api"],
            cwd=REPO_ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, log)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright."""
    if not CHROMIUM.is_file():
        reason = f"no Chromium at {CHROMIUM}: apt-get install chromium (make test does)"
        unavailable("BROWSER", reason)
    if required("BROWSER"):  # CI: fail, never skip
        import playwright.sync_api as sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$LUNGSEG_SCREENSHOTS`` or a temporary folder."""
    folder = os.environ.get("LUNGSEG_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
