"""One DICOMweb request and its failures: the status checked, the answer streamed within
the limits, the retry policy (see :mod:`service.dicomweb.client`).

httpx's own INFO lines quote request URLs (they hold UIDs): they are filtered out of the
``httpx`` and ``httpcore`` loggers when this module is imported.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from service.dicomweb.config import DicomwebConfig
from service.errors import PacsError, PacsNotFoundError, PacsTooLargeError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
STOW_RETRYABLE_STATUSES = frozenset({429, 503})


class _NoUrls(logging.Filter):
    """Drop httpx's and httpcore's INFO / DEBUG records (they quote request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _NoUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_NoUrls())


def retrying(
    config: DicomwebConfig,
    sleep: Callable[[float], None],
    operation: str,
    attempt: Callable[[float], T],
    *,
    idempotent: bool,
) -> T:
    """``attempt(deadline)`` until it succeeds, retried with exponential backoff (or the
    PACS's Retry-After) while the failure is retryable, safe to repeat (``idempotent``, or
    nothing was sent) and time is left before ``config.deadline_s``."""
    deadline = time.monotonic() + config.deadline_s
    for number in range(config.retries + 1):
        try:
            return attempt(deadline)
        except PacsError as err:
            attempt_error = err if isinstance(err, AttemptError) else None
            safe = err.status in STOW_RETRYABLE_STATUSES or (
                attempt_error is not None and attempt_error.nothing_sent
            )
            if not err.retryable or isinstance(err, PacsTooLargeError):
                raise
            if not idempotent and not safe:
                raise
            if number == config.retries:
                raise
            wait = min(config.max_backoff_s, config.backoff_s * 2**number)
            if attempt_error is not None and attempt_error.retry_after_s is not None:
                wait = min(config.max_backoff_s, attempt_error.retry_after_s)
            if time.monotonic() + wait >= deadline:
                raise
            log.info(
                "%s: retryable failure (%s), retry %d in %.2f s",
                operation,
                err.status or "no answer",
                number + 1,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def chunks(
    config: DicomwebConfig, answer: httpx.Response, operation: str, deadline: float
) -> Iterator[bytes]:
    """The answer's body in pieces; PacsError past the deadline, an idle wait or a broken
    connection."""
    try:
        for chunk in answer.iter_bytes(65536):
            if time.monotonic() > deadline:
                raise PacsError(
                    f"{operation}: the PACS's answer did not complete within "
                    f"{config.deadline_s:g} s (deadline_s)",
                    retryable=True,
                )
            yield chunk
    except httpx.TimeoutException as err:
        raise PacsError(
            f"{operation}: the PACS stopped sending for {config.idle_timeout_s:g} s "
            "(idle_timeout_s)",
            retryable=True,
        ) from err
    except httpx.TransportError as err:
        raise PacsError(
            f"{operation}: the connection to the PACS broke ({type(err).__name__})",
            retryable=True,
        ) from err


def read_all(
    config: DicomwebConfig, answer: httpx.Response, operation: str, deadline: float, limit: int
) -> bytes:
    """The whole body, at most ``limit`` (and ``max_bytes``) bytes, else PacsTooLargeError."""
    limit = min(limit, config.max_bytes)
    parts: list[bytes] = []
    total = 0
    for chunk in chunks(config, answer, operation, deadline):
        total += len(chunk)
        if total > limit:
            raise PacsTooLargeError(f"{operation}: the PACS's answer exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


class Answer:
    """Context manager: one request, its status checked; PacsError for failures."""

    def __init__(
        self,
        http: httpx.Client,
        config: DicomwebConfig,
        method: str,
        path: str,
        operation: str,
        deadline: float,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        content: Iterator[bytes] | None,
        accept_statuses: tuple[int, ...],
    ) -> None:
        self.http, self.config = http, config
        self.method, self.path, self.operation, self.deadline = method, path, operation, deadline
        self.params, self.headers, self.content = params, headers, content
        self.accept_statuses = accept_statuses
        self.response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        config = self.config
        if time.monotonic() >= self.deadline:
            raise PacsError(
                f"{self.operation}: no time left (deadline_s {config.deadline_s:g} s)",
                retryable=True,
            )
        request = self.http.build_request(
            self.method,
            config.root + self.path,
            params=self.params,
            headers=self.headers,
            content=self.content,
        )
        try:
            response = self.http.send(request, stream=True)
        except httpx.ConnectTimeout as err:
            raise unsent(f"{self.operation}: connecting to the PACS timed out") from err
        except httpx.ConnectError as err:
            raise unsent(
                f"{self.operation}: the PACS could not be reached (connection refused or no "
                "route; is it running, and is the DICOMweb URL right?)"
            ) from err
        except httpx.TimeoutException as err:
            raise PacsError(
                f"{self.operation}: the PACS did not answer within {config.idle_timeout_s:g} s "
                "(idle_timeout_s)",
                retryable=True,
            ) from err
        except httpx.TransportError as err:
            raise PacsError(
                f"{self.operation}: the connection to the PACS failed ({type(err).__name__})",
                retryable=True,
            ) from err
        self.response = response
        status = response.status_code
        if 200 <= status < 300 or status in self.accept_statuses:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > config.max_bytes:
                response.close()
                raise PacsTooLargeError(
                    f"{self.operation}: the PACS announces {declared} bytes, over the limit "
                    f"of {config.max_bytes} (max_bytes)"
                )
            return response
        response.close()
        raise status_error(self.operation, status, response.headers.get("retry-after"))

    def __exit__(self, *exc: object) -> None:
        if self.response is not None:
            self.response.close()


class AttemptError(PacsError):
    """A retryable failure of one attempt, with what the retry policy needs to know."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        nothing_sent: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retryable=True, status=status)
        self.nothing_sent = nothing_sent
        self.retry_after_s = retry_after_s


def unsent(message: str) -> PacsError:
    return AttemptError(message, nothing_sent=True)


def status_error(operation: str, status: int, retry_after: str | None) -> PacsError:
    if status == 404:
        return PacsNotFoundError(f"{operation}: the PACS does not hold it (HTTP 404)")
    if status in (401, 403):
        what = "rejected the credentials" if status == 401 else "denied access"
        return PacsError(
            f"{operation}: the PACS {what} (HTTP {status}); check the DICOMweb user / token",
            retryable=False,
            status=status,
        )
    if status in RETRYABLE_STATUSES or status >= 500:
        return AttemptError(
            f"{operation}: the PACS failed or is busy (HTTP {status})",
            status=status,
            retry_after_s=_retry_after(retry_after),
        )
    return PacsError(
        f"{operation}: the PACS refused the request (HTTP {status})", retryable=False, status=status
    )


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3600 else None
