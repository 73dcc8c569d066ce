"""The pages with authentication on, in headless Chromium: the key is asked for once, kept in
sessionStorage and sent as a header, never in a URL (skipped without Chromium, unless
LUNGSEG_REQUIRE_BROWSER=1)."""

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

from service.api.settings import REPO_ROOT
from tests.security.conftest import KeysFile

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("LUNGSEG_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
PNG = REPO_ROOT / "tests" / "fixtures" / "cxr_covid_1902.png"
LOADED = "#status .notice, #run-select:not([disabled])"  # the dashboard has its answers


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        if os.environ.get("LUNGSEG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def service(tmp_path: Path, keys_file: KeysFile) -> Iterator[str]:
    """``python -m service.api`` on loopback with the keys file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGSEG_")} | {
        "LUNGSEG_PORT": str(port),
        "LUNGSEG_API_KEYS_FILE": str(keys_file.path),
        "LUNGSEG_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.db'}",
        "LUNGSEG_LOG_LEVEL": "warning",
    }
    process = subprocess.Popen([sys.executable, "-m", "service.api"], cwd=REPO_ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        assert httpx.get(f"{base}/readyz").status_code == 200
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _enter_key(page: Any, key: str) -> None:
    dialog = page.locator("dialog.key-dialog")
    dialog.wait_for(state="visible", timeout=20_000)
    dialog.locator("input[type=password]").fill(key)
    dialog.get_by_role("button", name="Use this key").click()


def test_the_pages_ask_for_the_key_once_and_send_it_as_a_header(browser, service, keys_file):
    page = browser.new_page()
    api_calls: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: "/v1/" in r.url and api_calls.append((r.url, r.headers.get("authorization"))),
    )
    page.goto(f"{service}/viewer")
    page.set_input_files("#file", str(PNG))
    page.click("#run")
    _enter_key(page, keys_file.keys["viewer-app"])
    page.wait_for_selector("body[data-state=done]", timeout=60_000)
    assert page.locator("figure.result").count() == 1
    stored = page.evaluate("sessionStorage.getItem('lungseg.apiKey')")
    assert stored == keys_file.keys["viewer-app"]
    assert page.evaluate("localStorage.length") == 0
    # the dashboard in the same tab uses the stored key without asking again
    page.goto(f"{service}/dashboard")
    page.wait_for_selector(LOADED, timeout=30_000)
    assert page.locator("dialog.key-dialog").count() == 0
    assert "Error" not in page.text_content("#status")
    key = keys_file.keys["viewer-app"]
    assert all(key not in url for url, _ in api_calls)
    authorised = [url for url, header in api_calls if header == f"Bearer {key}"]
    assert any("/v1/segment" in url for url in authorised)
    assert any("/v1/benchmark" in url for url in authorised)
    refused = [url for url, header in api_calls if header is None]
    assert refused and all("/v1/render" in url for url in refused)  # the first try, once
    page.close()


def test_a_key_without_the_scope_is_asked_again(browser, service, keys_file):
    page = browser.new_page()
    page.goto(f"{service}/dashboard")
    _enter_key(page, keys_file.keys["pacs-bridge"])  # segment only: the dashboard needs more
    message = page.locator("#api-key-message")
    message.wait_for(timeout=20_000)
    assert "benchmark" in message.text_content()
    _enter_key(page, keys_file.keys["research"])
    page.wait_for_selector(LOADED, timeout=30_000)
    assert "Error" not in page.text_content("#status")
    assert page.evaluate("sessionStorage.getItem('lungseg.apiKey')") == keys_file.keys["research"]
    page.close()
