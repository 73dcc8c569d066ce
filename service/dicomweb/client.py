"""A small DICOMweb client over httpx: QIDO-RS (find), WADO-RS (retrieve), STOW-RS (store).

Bounded like an upload: an answer is streamed and counted against ``max_bytes`` (a declared
Content-Length over it is refused before reading), a read that waits ``idle_timeout_s`` for a
byte is abandoned, and each call ends by ``deadline_s``, retries included. Instances are kept
in memory, never written to disk.

Failures raise :class:`~service.errors.PacsError` (``retryable``, ``status``) with the
operation and the reason: the PACS down or refusing connections, timeouts, 4xx (401/403: the
credentials; 404: :class:`~service.errors.PacsNotFoundError`), 5xx, malformed answers; an
answer over the limits raises :class:`~service.errors.PacsTooLargeError`. QIDO and WADO are
retried with exponential backoff (or the PACS's Retry-After) on retryable failures; STOW only
when the PACS answers 429 / 503 or no connection could be opened (nothing was sent).

Nothing here logs a UID, a URL path (it holds UIDs) or patient data: only the operation,
statuses, counts, bytes and times. httpx's own INFO lines quote request URLs: they are
filtered out of the ``httpx`` logger when this module is imported.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from service.dicomweb.config import DicomwebConfig
from service.dicomweb.multipart import (
    MultipartError,
    MultipartReader,
    boundary_of,
    multipart_body,
    new_boundary,
)
from service.errors import (
    InvalidParameterError,
    PacsError,
    PacsNotFoundError,
    PacsTooLargeError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MAX_JSON_BYTES = 16 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
STOW_RETRYABLE_STATUSES = frozenset({429, 503})
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# DICOM JSON tags
_SERIES_UID, _MODALITY, _DESCRIPTION, _NUMBER, _INSTANCES = (
    "0020000E",
    "00080060",
    "0008103E",
    "00200011",
    "00201209",
)
_REFERENCED_SOP, _FAILED_SOP, _SOP_INSTANCE, _FAILURE_REASON = (
    "00081199",
    "00081198",
    "00081155",
    "00081197",
)


class _NoUrls(logging.Filter):
    """Drop httpx's and httpcore's INFO / DEBUG records (they quote request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


for _name in ("httpx", "httpcore"):
    if not any(isinstance(f, _NoUrls) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_NoUrls())


@dataclass(frozen=True, repr=False)
class SeriesInfo:
    """One series of a study, as QIDO-RS describes it (UIDs: for the caller, never logged)."""

    series_uid: str
    modality: str
    description: str
    number: int | None
    instances: int | None

    def __repr__(self) -> str:
        return f"SeriesInfo({self.modality or '?'}, {self.instances} instance(s))"


@dataclass(frozen=True, repr=False)
class StoreReceipt:
    """What a STOW-RS answer says.

    Attributes:
        status: the PACS's HTTP status (200 all stored, 202 some failed or with warnings).
        stored: SOP Instance UIDs the PACS reports stored (Referenced SOP Sequence).
        failed: (SOP Instance UID, Failure Reason or None) of each instance it refused.
        sent: how many instances were sent.
    """

    status: int
    stored: tuple[str, ...]
    failed: tuple[tuple[str, int | None], ...]
    sent: int

    @property
    def complete(self) -> bool:
        """Every instance sent was stored."""
        return not self.failed and len(self.stored) == self.sent

    def __repr__(self) -> str:
        return (
            f"StoreReceipt(HTTP {self.status}, {len(self.stored)}/{self.sent} stored, "
            f"{len(self.failed)} failed)"
        )


class DicomwebClient:
    """QIDO-RS / WADO-RS / STOW-RS against one PACS (see the module docstring).

    ``transport`` replaces httpx's network transport (tests); ``sleep`` the backoff wait.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        config: DicomwebConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep
        headers = {"User-Agent": "lungseg-dicomweb"}
        auth: httpx.Auth | None = None
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        elif config.username is not None and config.password is not None:
            auth = httpx.BasicAuth(config.username, config.password)
        self._http = httpx.Client(
            auth=auth,
            headers=headers,
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.idle_timeout_s,
                write=config.idle_timeout_s,
                pool=config.connect_timeout_s,
            ),
            verify=config.verify_tls,
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    def __enter__(self) -> DicomwebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- QIDO-RS ---------------------------------------------------------------------------

    def find_series(self, study_uid: str) -> list[SeriesInfo]:
        """The series of a study (QIDO-RS ``/studies/{study}/series``); [] when the PACS
        knows none (an unknown study included)."""
        path = f"/studies/{_uid(study_uid, 'study_uid')}/series"
        params = {"includefield": [_DESCRIPTION, _NUMBER, _INSTANCES]}

        def attempt(deadline: float) -> list[SeriesInfo]:
            with self._stream(
                "GET", path, "QIDO-RS", deadline, params=params, headers={"Accept": DICOM_JSON}
            ) as answer:
                if answer.status_code == 204:
                    return []
                body = self._read_all(answer, "QIDO-RS", deadline, MAX_JSON_BYTES)
            items = _json(body, "QIDO-RS")
            if not isinstance(items, list):
                raise PacsError("QIDO-RS: the PACS's answer is not a JSON list", retryable=False)
            return [_series_info(item) for item in items if isinstance(item, dict)]

        found = self._retrying("QIDO-RS", attempt, idempotent=True)
        log.info("QIDO-RS: %d series", len(found))
        return found

    # -- WADO-RS ---------------------------------------------------------------------------

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        """Every instance of a series (WADO-RS, multipart/related, as stored: any transfer
        syntax), each as its DICOM file's bytes, within ``max_bytes`` / ``max_instances``."""
        path = f"/studies/{_uid(study_uid, 'study_uid')}/series/{_uid(series_uid, 'series_uid')}"

        def attempt(deadline: float) -> list[bytes]:
            with self._stream(
                "GET", path, "WADO-RS", deadline, headers={"Accept": WADO_ACCEPT}
            ) as answer:
                return self._read_instances(answer, deadline)

        began = time.monotonic()
        instances = self._retrying("WADO-RS", attempt, idempotent=True)
        if not instances:
            raise PacsNotFoundError("WADO-RS: the PACS returned no instance of the series", 200)
        log.info(
            "WADO-RS: %d instance(s), %d bytes in %.2f s",
            len(instances),
            sum(len(i) for i in instances),
            time.monotonic() - began,
        )
        return instances

    def _read_instances(self, answer: httpx.Response, deadline: float) -> list[bytes]:
        kind = answer.headers.get("content-type", "")
        if kind.split(";")[0].strip().lower() == DICOM:  # one instance, not multipart
            return [self._read_all(answer, "WADO-RS", deadline, self.config.max_bytes)]
        try:
            reader = MultipartReader(boundary_of(kind))
        except MultipartError as err:
            raise PacsError(f"WADO-RS: unexpected answer: {err}", retryable=False) from err
        instances: list[bytes] = []
        total = 0
        try:
            for chunk in self._chunks(answer, "WADO-RS", deadline):
                total += len(chunk)
                if total > self.config.max_bytes:
                    raise PacsTooLargeError(
                        f"WADO-RS: the series exceeds the limit of {self.config.max_bytes} "
                        "bytes (max_bytes)"
                    )
                instances += [body for _, body in reader.feed(chunk)]
                if len(instances) > self.config.max_instances:
                    raise PacsTooLargeError(
                        f"WADO-RS: the series has more than {self.config.max_instances} "
                        "instances (max_instances)"
                    )
            reader.finish()
        except MultipartError as err:
            raise PacsError(
                f"WADO-RS: the PACS's multipart answer is malformed ({err})", retryable=True
            ) from err
        return instances

    # -- STOW-RS ---------------------------------------------------------------------------

    def store(self, instances: Sequence[bytes], study_uid: str | None = None) -> StoreReceipt:
        """Store DICOM instances (STOW-RS ``/studies`` or ``/studies/{study}``).

        Returns the receipt of a 200 / 202 answer. Raises PacsError when the PACS stored
        none (409, or an answer listing only failures), refused the request or failed.
        """
        if not instances:
            raise InvalidParameterError("nothing to store: give at least one instance")
        path = "/studies" if study_uid is None else f"/studies/{_uid(study_uid, 'study_uid')}"
        boundary = new_boundary()

        def attempt(deadline: float) -> StoreReceipt:
            length, chunks = multipart_body(instances, boundary)
            headers = {
                "Content-Type": f'multipart/related; type="{DICOM}"; boundary={boundary}',
                "Content-Length": str(length),
                "Accept": DICOM_JSON,
            }
            with self._stream(
                "POST",
                path,
                "STOW-RS",
                deadline,
                headers=headers,
                content=chunks,
                accept_statuses=(409,),
            ) as answer:
                body = self._read_all(answer, "STOW-RS", deadline, MAX_JSON_BYTES)
                status = answer.status_code
            return _receipt(status, body, len(instances))

        began = time.monotonic()
        receipt = self._retrying("STOW-RS", attempt, idempotent=False)
        log.info(
            "STOW-RS: HTTP %d, %d/%d stored, %d failed in %.2f s",
            receipt.status,
            len(receipt.stored),
            receipt.sent,
            len(receipt.failed),
            time.monotonic() - began,
        )
        if not receipt.stored:
            reasons = sorted({f"0x{r:04X}" for _, r in receipt.failed if r is not None})
            raise PacsError(
                f"STOW-RS: the PACS stored none of the {receipt.sent} instance(s) (HTTP "
                f"{receipt.status}; failure reasons: {', '.join(reasons) or 'none given'})",
                retryable=False,
                status=receipt.status,
            )
        return receipt

    # -- plumbing --------------------------------------------------------------------------

    def _retrying(self, operation: str, attempt: Callable[[float], T], *, idempotent: bool) -> T:
        deadline = time.monotonic() + self.config.deadline_s
        for number in range(self.config.retries + 1):
            try:
                return attempt(deadline)
            except PacsError as err:
                attempt_error = err if isinstance(err, _AttemptError) else None
                safe = err.status in STOW_RETRYABLE_STATUSES or (
                    attempt_error is not None and attempt_error.nothing_sent
                )
                if not err.retryable or isinstance(err, PacsTooLargeError):
                    raise
                if not idempotent and not safe:
                    raise
                if number == self.config.retries:
                    raise
                wait = min(self.config.max_backoff_s, self.config.backoff_s * 2**number)
                if attempt_error is not None and attempt_error.retry_after_s is not None:
                    wait = min(self.config.max_backoff_s, attempt_error.retry_after_s)
                if time.monotonic() + wait >= deadline:
                    raise
                log.info(
                    "%s: retryable failure (%s), retry %d in %.2f s",
                    operation,
                    err.status or "no answer",
                    number + 1,
                    wait,
                )
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _stream(
        self,
        method: str,
        path: str,
        operation: str,
        deadline: float,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content: Iterator[bytes] | None = None,
        accept_statuses: tuple[int, ...] = (),
    ) -> _Answer:
        return _Answer(
            self, method, path, operation, deadline, params, headers, content, accept_statuses
        )

    def _chunks(self, answer: httpx.Response, operation: str, deadline: float) -> Iterator[bytes]:
        try:
            for chunk in answer.iter_bytes(65536):
                if time.monotonic() > deadline:
                    raise PacsError(
                        f"{operation}: the PACS's answer did not complete within "
                        f"{self.config.deadline_s:g} s (deadline_s)",
                        retryable=True,
                    )
                yield chunk
        except httpx.TimeoutException as err:
            raise PacsError(
                f"{operation}: the PACS stopped sending for {self.config.idle_timeout_s:g} s "
                "(idle_timeout_s)",
                retryable=True,
            ) from err
        except httpx.TransportError as err:
            raise PacsError(
                f"{operation}: the connection to the PACS broke ({type(err).__name__})",
                retryable=True,
            ) from err

    def _read_all(
        self, answer: httpx.Response, operation: str, deadline: float, limit: int
    ) -> bytes:
        limit = min(limit, self.config.max_bytes)
        parts: list[bytes] = []
        total = 0
        for chunk in self._chunks(answer, operation, deadline):
            total += len(chunk)
            if total > limit:
                raise PacsTooLargeError(f"{operation}: the PACS's answer exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


class _Answer:
    """Context manager: one request, its status checked; PacsError for failures."""

    def __init__(
        self,
        client: DicomwebClient,
        method: str,
        path: str,
        operation: str,
        deadline: float,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        content: Iterator[bytes] | None,
        accept_statuses: tuple[int, ...],
    ) -> None:
        self.client = client
        self.method, self.path, self.operation, self.deadline = method, path, operation, deadline
        self.params, self.headers, self.content = params, headers, content
        self.accept_statuses = accept_statuses
        self.response: httpx.Response | None = None

    def __enter__(self) -> httpx.Response:
        config = self.client.config
        if time.monotonic() >= self.deadline:
            raise PacsError(
                f"{self.operation}: no time left (deadline_s {config.deadline_s:g} s)",
                retryable=True,
            )
        request = self.client._http.build_request(
            self.method,
            config.root + self.path,
            params=self.params,
            headers=self.headers,
            content=self.content,
        )
        try:
            response = self.client._http.send(request, stream=True)
        except httpx.ConnectTimeout as err:
            raise _unsent(f"{self.operation}: connecting to the PACS timed out") from err
        except httpx.ConnectError as err:
            raise _unsent(
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
        raise _status_error(self.operation, status, response.headers.get("retry-after"))

    def __exit__(self, *exc: object) -> None:
        if self.response is not None:
            self.response.close()


class _AttemptError(PacsError):
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


def _unsent(message: str) -> PacsError:
    return _AttemptError(message, nothing_sent=True)


def _status_error(operation: str, status: int, retry_after: str | None) -> PacsError:
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
        return _AttemptError(
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


def _uid(value: str, name: str) -> str:
    text = str(value).strip()
    if not (0 < len(text) <= 64 and _UID.match(text)):
        raise InvalidParameterError(f"{name} is not a DICOM UID (digits and dots)", name)
    return text


def _json(body: bytes, operation: str) -> Any:
    if not body.strip():
        return []
    try:
        return json.loads(body)
    except ValueError as err:
        raise PacsError(f"{operation}: the PACS's answer is not JSON", retryable=False) from err


def _first(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _series_info(item: dict[str, Any]) -> SeriesInfo:
    return SeriesInfo(
        series_uid=str(_first(item, _SERIES_UID) or ""),
        modality=str(_first(item, _MODALITY) or ""),
        description=str(_first(item, _DESCRIPTION) or ""),
        number=_int(_first(item, _NUMBER)),
        instances=_int(_first(item, _INSTANCES)),
    )


def _receipt(status: int, body: bytes, sent: int) -> StoreReceipt:
    answer = _json(body, "STOW-RS") if body.strip() else {}
    if isinstance(answer, list):  # some servers wrap the dataset in a list
        answer = answer[0] if answer else {}
    if not isinstance(answer, dict):
        raise PacsError("STOW-RS: the PACS's answer is not a DICOM JSON dataset", retryable=False)
    stored = tuple(
        str(_first(item, _SOP_INSTANCE) or "")
        for item in (answer.get(_REFERENCED_SOP) or {}).get("Value") or []
        if isinstance(item, dict)
    )
    failed = tuple(
        (str(_first(item, _SOP_INSTANCE) or ""), _int(_first(item, _FAILURE_REASON)))
        for item in (answer.get(_FAILED_SOP) or {}).get("Value") or []
        if isinstance(item, dict)
    )
    return StoreReceipt(status=status, stored=stored, failed=failed, sent=sent)
