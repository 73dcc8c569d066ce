"""Admission control: a bounded number of inferences in flight and a short bounded queue.

Past ``in_flight + queue`` waiting requests the next one is refused at once (503 with
Retry-After) instead of joining an ever-growing queue, so admitted requests keep a bounded
latency under overload.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.api.errors import Overloaded


class Admission:
    """Gate for inference work inside one event loop (one uvicorn worker)."""

    def __init__(self, in_flight: int, queue: int, retry_after_s: int = 1) -> None:
        self.capacity = in_flight
        self.limit = in_flight + queue
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(in_flight)
        self._admitted = 0
        self._running = 0

    @property
    def admitted(self) -> int:
        """Requests running or waiting for a slot."""
        return self._admitted

    @property
    def running(self) -> int:
        """Requests holding an inference slot now."""
        return self._running

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold an inference slot; raises :class:`Overloaded` when the queue is full."""
        if self._admitted >= self.limit:
            raise Overloaded(self.retry_after_s)
        self._admitted += 1
        try:
            async with self._slots:
                self._running += 1
                try:
                    yield
                finally:
                    self._running -= 1
        finally:
            self._admitted -= 1
