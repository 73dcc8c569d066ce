"""Pure ASGI middlewares that apply to every answer (no path matching): the audit line of each
request, security headers, and the last resort for a bug (a 500 that leaves the connection
usable).
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import request_id
from service.api.errors import internal_error

audit = logging.getLogger("lungseg.access")
log = logging.getLogger("lungseg")
DRAIN_BYTES = 1 << 20
DRAIN_TIMEOUT_S = 1.0
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)


class AuditMiddleware:
    """One line per request at INFO in ``lungseg.access``: request id, client (the
    authenticated name or token subject, ``-`` when none), method, route template, status,
    duration and bytes in and out. Never the path's values, query, file names or content."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        counts = {"in": 0, "out": 0, "status": 500}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            principal = scope.get("state", {}).get("principal")
            route = getattr(scope.get("route"), "path", "unmatched")
            fields = {
                "request_id": request_id.current.get(),
                "client": getattr(principal, "name", "-"),
                "auth": getattr(principal, "method", "-"),
                "method": scope.get("method", ""),
                "route": route,
                "status": counts["status"],
                "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                "bytes_in": counts["in"],
                "bytes_out": counts["out"],
            }
            audit.info(
                "%(request_id)s %(client)s %(method)s %(route)s -> %(status)d "
                "%(duration_ms).1f ms in=%(bytes_in)d out=%(bytes_out)d",
                fields,
                extra=fields,
            )


class SecurityHeadersMiddleware:
    """``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` on every answer,
    ``Cache-Control: no-store`` unless the route set its own (results and errors are never
    cached), and on HTML pages a Content-Security-Policy with ``frame-ancestors 'none'``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [(b"x-content-type-options", b"nosniff")]
                headers += [(b"referrer-policy", b"no-referrer")]
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers += [
                        (b"content-security-policy", PAGE_CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                    ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class ServerErrorGuard:
    """The last resort for a bug: log it once with its request id, answer 500 problem+json,
    read what is left of the request body (bounded) and return normally, so the server keeps
    the keep-alive connection usable instead of resetting it under the client's next request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        body_done = False

        async def tracking_receive() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, tracking_receive, tracking_send)
        except Exception:
            rid = request_id.current.get()
            route = getattr(scope.get("route"), "path", scope.get("path", ""))
            log.exception("request %s: unhandled error on %s %s", rid, scope.get("method"), route)
            if started:
                return  # part of the answer is out: the server closes the connection
            if not body_done:
                await _drain(receive)
            await internal_error(rid, scope.get("path", ""))(scope, receive, send)


async def _drain(receive: Receive) -> None:
    """Read and discard the rest of the request body (at most DRAIN_BYTES, DRAIN_TIMEOUT_S)."""
    read = 0
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            while read <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                read += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return
