"""A real uvicorn server for an app object, in a thread on a free loopback port (the tests can
still reach into the app, e.g. to make a handler fail), stopped when the block ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from bench.serve import free_port, wait_ready


@contextmanager
def serving(app: FastAPI, timeout_s: float = 60) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of ``app`` served by uvicorn (lifespan included)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", timeout_s)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.1)
