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

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from service.dicomweb.answers import (
    DESCRIPTION,
    INSTANCES,
    NUMBER,
    SeriesInfo,
    StoreReceipt,
    check_uid,
    parse_json,
    series_info,
    store_receipt,
)
from service.dicomweb.config import DicomwebConfig
from service.dicomweb.multipart import (
    MultipartError,
    MultipartReader,
    boundary_of,
    multipart_body,
    new_boundary,
)
from service.dicomweb.transport import Answer, chunks, read_all, retrying
from service.errors import (
    InvalidParameterError,
    PacsError,
    PacsNotFoundError,
    PacsTooLargeError,
)

log = logging.getLogger(__name__)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
MAX_JSON_BYTES = 16 * 1024 * 1024


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
        path = f"/studies/{check_uid(study_uid, 'study_uid')}/series"
        params = {"includefield": [DESCRIPTION, NUMBER, INSTANCES]}

        def attempt(deadline: float) -> list[SeriesInfo]:
            with self._stream(
                "GET", path, "QIDO-RS", deadline, params=params, headers={"Accept": DICOM_JSON}
            ) as answer:
                if answer.status_code == 204:
                    return []
                body = read_all(self.config, answer, "QIDO-RS", deadline, MAX_JSON_BYTES)
            items = parse_json(body, "QIDO-RS")
            if not isinstance(items, list):
                raise PacsError("QIDO-RS: the PACS's answer is not a JSON list", retryable=False)
            return [series_info(item) for item in items if isinstance(item, dict)]

        found = retrying(self.config, self._sleep, "QIDO-RS", attempt, idempotent=True)
        log.info("QIDO-RS: %d series", len(found))
        return found

    # -- WADO-RS ---------------------------------------------------------------------------

    def retrieve_series(self, study_uid: str, series_uid: str) -> list[bytes]:
        """Every instance of a series (WADO-RS, multipart/related, as stored: any transfer
        syntax), each as its DICOM file's bytes, within ``max_bytes`` / ``max_instances``."""
        study, series = check_uid(study_uid, "study_uid"), check_uid(series_uid, "series_uid")
        path = f"/studies/{study}/series/{series}"

        def attempt(deadline: float) -> list[bytes]:
            with self._stream(
                "GET", path, "WADO-RS", deadline, headers={"Accept": WADO_ACCEPT}
            ) as answer:
                return self._read_instances(answer, deadline)

        began = time.monotonic()
        instances = retrying(self.config, self._sleep, "WADO-RS", attempt, idempotent=True)
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
            return [read_all(self.config, answer, "WADO-RS", deadline, self.config.max_bytes)]
        try:
            reader = MultipartReader(boundary_of(kind))
        except MultipartError as err:
            raise PacsError(f"WADO-RS: unexpected answer: {err}", retryable=False) from err
        instances: list[bytes] = []
        total = 0
        try:
            for chunk in chunks(self.config, answer, "WADO-RS", deadline):
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
        path = "/studies" if study_uid is None else f"/studies/{check_uid(study_uid, 'study_uid')}"
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
                body = read_all(self.config, answer, "STOW-RS", deadline, MAX_JSON_BYTES)
                status = answer.status_code
            return store_receipt(status, body, len(instances))

        began = time.monotonic()
        receipt = retrying(self.config, self._sleep, "STOW-RS", attempt, idempotent=False)
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
    ) -> Answer:
        return Answer(
            self._http,
            self.config,
            method,
            path,
            operation,
            deadline,
            params,
            headers,
            content,
            accept_statuses,
        )
