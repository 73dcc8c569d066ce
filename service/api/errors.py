"""One error format for every failure: RFC 7807 ``application/problem+json``.

Domain exceptions of the core are mapped to HTTP status codes here and only here.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service import errors
from service.api import request_id

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://github.com/lungseg/lungseg/blob/main/README.md#errors"

# Most specific first: the first matching class decides the status.
STATUS_BY_ERROR: list[tuple[type[errors.LungsegError], int]] = [
    (errors.UnsupportedModalityError, 415),
    (errors.UnsupportedMediaError, 415),
    (errors.InputTooLargeError, 413),
    (errors.InvalidParameterError, 422),
    (errors.UnauthenticatedError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.UploadTimeoutError, 408),
    (errors.InvalidInputError, 400),
    (errors.ModelLoadError, 503),
    (errors.BusyError, 503),
]


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "malformed request (e.g. two credentials), empty upload or bad archive",
    401: "no credential, or one that is not valid (see WWW-Authenticate)",
    403: "the credential lacks the scope this operation needs",
    404: "unknown id or set",
    409: "the job is not done yet, or cannot give this file (e.g. a SEG of a NIfTI volume)",
    408: "the upload stopped sending data (LUNGSEG_UPLOAD_TIMEOUT_S)",
    413: "upload or image too large",
    415: "unsupported or undecodable file, or Content-Type",
    422: "invalid parameter value",
    503: "at capacity: retry after Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these statuses, each an ``application/problem+json``."""
    return {
        status: {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


class Overloaded(errors.BusyError):
    """All inference slots and the queue are taken; the client should retry later."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("the service is at capacity; retry later", retry_after_s)


def slug(error: type[Exception]) -> str:
    """``UnsupportedMediaError`` -> ``unsupported-media``."""
    name = error.__name__.removesuffix("Error")
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")


def problem(status: int, detail: str, kind: str, instance: str = "", **extra: Any) -> JSONResponse:
    """Build a problem+json response."""
    body = {
        "type": f"{PROBLEM_BASE}-{kind}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def status_of(err: errors.LungsegError) -> int:
    return next((code for cls, code in STATUS_BY_ERROR if isinstance(err, cls)), 400)


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, errors.LungsegError):
        raise exc
    status = status_of(exc)
    log.info(
        "request %s: %s %s -> %d %s",
        request_id.current.get(),
        request.method,
        request.url.path,
        status,
        type(exc).__name__,
    )
    if isinstance(exc, errors.BusyError):
        return busy(exc, request.url.path)
    if isinstance(exc, errors.UnauthenticatedError | errors.ForbiddenError):
        return refused(exc, request.url.path)
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.InvalidParameterError) and exc.parameter:
        extra["errors"] = [{"loc": ["query", exc.parameter], "msg": str(exc), "type": "value"}]
    if isinstance(exc, errors.SeriesChoiceError):
        extra["series"] = exc.series  # for the caller to choose one (never logged)
    return problem(status, str(exc), slug(type(exc)), request.url.path, **extra)


def busy(exc: errors.BusyError, instance: str) -> JSONResponse:
    """503 problem+json with ``Retry-After`` for a refusal at capacity."""
    response = problem(503, str(exc), slug(type(exc)), instance)
    response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def refused(
    exc: errors.UnauthenticatedError | errors.ForbiddenError, instance: str
) -> JSONResponse:
    """401 or 403 problem+json with the RFC 6750 ``WWW-Authenticate: Bearer`` challenge."""
    challenge = 'Bearer realm="lungseg"'
    if isinstance(exc, errors.ForbiddenError):
        challenge += f', error="insufficient_scope", scope="{" ".join(exc.scopes)}"'
    elif exc.error:
        challenge += f', error="{exc.error}"'
    response = problem(status_of(exc), str(exc), slug(type(exc)), instance)
    response.headers["WWW-Authenticate"] = challenge
    return response


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    details = exc.errors() if isinstance(exc, RequestValidationError) else []
    fields = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in details
    ]
    missing_only = bool(fields) and all(f["type"] == "missing" for f in fields)
    status = 400 if missing_only else 422
    text = "; ".join(f"{'.'.join(str(p) for p in f['loc'])}: {f['msg']}" for f in fields)
    kind = "malformed-request" if missing_only else "invalid-parameter"
    return problem(status, text or "invalid request", kind, request.url.path, errors=fields)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    code = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "error"
    kind = {413: "input-too-large", 408: "upload-timeout"}.get(code, f"http-{code}")
    response = problem(code, str(detail), kind, request.url.path)
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        response.headers.update(exc.headers)
    if code == 405:  # every method the path has, not only those of the first route matched
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app fully matches for this request's path (sorted)."""
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in request.app.routes
        )
    ]


def internal_error(rid: str, instance: str) -> JSONResponse:
    """The 500 of a bug: nothing about it but the request id to look it up in the log."""
    detail = f"internal error; see the service log (request {rid})"
    return problem(500, detail, "internal", instance)


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(errors.LungsegError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
