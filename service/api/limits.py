"""Refuse oversized request bodies from their Content-Length, before parsing them."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import problem
from service.api.settings import Settings

MULTIPART_SLACK = 1 << 20


class BodyLimitMiddleware:
    """413 problem+json when Content-Length exceeds the route's limit (plus multipart slack)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def limit_for(self, path: str) -> int:
        if path.startswith("/v1/benchmark"):
            return self.settings.benchmark_max_zip_bytes + MULTIPART_SLACK
        return self.settings.max_upload_bytes + MULTIPART_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit_for(scope["path"]):
                response = problem(
                    413,
                    f"request body of {int(length)} bytes exceeds the limit "
                    f"({self.limit_for(scope['path'])} bytes)",
                    "input-too-large",
                    scope["path"],
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
