"""``X-Request-ID``: taken from the request when it is a plain token, else made up; sent back
with the response and written in the service's log lines about the request, so that an
integrator (a PACS or EHR bridge) can find a failure of theirs in the service's log."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
current: ContextVar[str] = ContextVar("lungseg_request_id", default="-")
"""The id of the request being handled. Each request runs in an asyncio task of its own, so the
value stays with it, and threads started with its context see it too; it is not reset at the
end, so that the server-error handler, which runs outside this middleware, still sees it."""


def request_id(given: bytes) -> str:
    """``given`` when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``, else a new uuid4 hex."""
    return given.decode("ascii") if _TOKEN.fullmatch(given) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets :data:`current` for the request and adds ``X-Request-ID`` to its response (a 500
    answer is sent outside it: its handler adds the header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(dict(scope.get("headers") or []).get(HEADER, b""))
        current.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)
