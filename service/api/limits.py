"""Refuse oversized or stalled request bodies: oversized from their Content-Length before
reading them, and while they stream in when there is none (chunked uploads), so no body beyond
the limit is held; stalled when no data has come for ``LUNGSEG_UPLOAD_TIMEOUT_S``, so that a
client trickling its upload cannot hold an admission for ever."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import problem
from service.api.settings import Settings

MULTIPART_SLACK = 1 << 20


class BodyLimitMiddleware:
    """413 problem+json when a body exceeds the route's limit (plus multipart slack).

    A declared Content-Length over the limit is refused at once. Otherwise the bytes received
    are counted; past the limit, reading raises an ``HTTPException(413)`` that the handlers
    turn into problem+json like any other (FastAPI re-raises HTTP exceptions met while
    parsing a body); a body that stops arriving raises ``HTTPException(408)`` the same way.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> int:
        if path.startswith("/v1/benchmark"):
            return self.settings.benchmark_max_zip_bytes + MULTIPART_SLACK
        return self.settings.max_upload_bytes + MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            detail = f"request body of {int(length)} bytes exceeds the limit ({limit} bytes)"
            await problem(413, detail, "input-too-large", scope["path"])(scope, receive, send)
            return
        timeout = self.settings.upload_timeout_s
        await self.app(scope, guarded_receive(receive, limit, timeout), send)


def guarded_receive(receive: Receive, limit: int, idle_timeout_s: float) -> Receive:
    """``receive`` that raises HTTPException(413) once more than ``limit`` body bytes came, and
    HTTPException(408) when the next part of an unfinished body takes over ``idle_timeout_s``."""
    received = 0
    body_done = False

    async def guarded() -> Message:
        nonlocal received, body_done
        if body_done:  # e.g. waiting for a disconnect: no deadline
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), idle_timeout_s)
        except TimeoutError:
            detail = f"the upload stalled: no data for {idle_timeout_s:g} s"
            raise HTTPException(408, detail) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > limit:
                raise HTTPException(413, f"request body exceeds the limit ({limit} bytes)")
        return message

    return guarded
