"""Admission control: a bounded number of requests per worker, refused at once beyond it.

The ``Segmenter`` bounds the inferences that run at once (``LUNGSEG_MAX_IN_FLIGHT``); here
the requests a worker holds in all (reading their upload, waiting or running:
``in_flight + queue``) are bounded. Past the bound the next request gets 503 with Retry-After
at once, before its upload is even read, instead of joining an ever-growing queue, so admitted
requests keep a bounded latency and a bounded memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from service.api.errors import Overloaded


class Admission:
    """Counts the admitted requests of one event loop (one uvicorn worker).

    ``observe`` is called with the new count on every change (e.g. a Prometheus gauge's
    ``set``), ``on_refusal`` once per refused request (e.g. a counter's ``inc``).
    """

    def __init__(
        self,
        limit: int,
        retry_after_s: int = 1,
        observe: Callable[[int], None] | None = None,
        on_refusal: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._admitted = 0
        self._observe = observe or (lambda _count: None)
        self._on_refusal = on_refusal or (lambda: None)

    @property
    def admitted(self) -> int:
        """Requests running or waiting."""
        return self._admitted

    @property
    def full(self) -> bool:
        return self._admitted >= self.limit

    def refuse(self) -> Overloaded:
        """Count one refused request; the error to answer it with (503 + Retry-After)."""
        self._on_refusal()
        return Overloaded(self.retry_after_s)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold an admission; raises :class:`Overloaded` when the worker is full."""
        if self.full:
            raise self.refuse()
        self._admitted += 1
        self._observe(self._admitted)
        try:
            yield
        finally:
            self._admitted -= 1
            self._observe(self._admitted)
