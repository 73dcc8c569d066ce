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

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import Overloaded, busy

GATED_PATHS = frozenset({"/v1/segment", "/v1/render"})


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


class AdmissionMiddleware:
    """Admission for the gated routes, held for the whole request: reading the upload, waiting
    for an inference slot and running.

    While the worker is full the answer is 503 + Retry-After at once, before the body is read,
    so refusing costs next to nothing and overload does not eat the CPU that admitted requests
    need; and since a request is admitted before its upload is read, the uploads held in
    memory are bounded too (at most the admission limit per worker).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in GATED_PATHS:
            await self.app(scope, receive, send)
            return
        admission = getattr(scope["app"].state, "admission", None)
        if not isinstance(admission, Admission):  # the lifespan has not built it (yet)
            await self.app(scope, receive, send)
            return
        if admission.full:
            await busy(admission.refuse(), scope["path"])(scope, receive, send)
            return
        async with admission.slot():
            await self.app(scope, receive, send)
