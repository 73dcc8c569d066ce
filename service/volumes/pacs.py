"""A volume job's PACS calls: the series pulled by WADO-RS, the SEG pushed back by STOW-RS.

A failed push never fails the job: the masks and the SEG stay downloadable, and the job's
``store`` record says what happened::

    {"status": "stored" | "partial" | "failed", "seg_sop_instance_uid": "...",
     "pacs_status": 200, "stored": ["<SOP Instance UID>"], "failed": [],
     "attempts": 1, "error": null, "retryable": null}

``attempts`` counts the STOW-RS requests made: the client retries with exponential backoff
only where that is safe (the PACS answered 429 / 503, or no connection could be opened so
nothing was sent); a refusal (4xx), a 5xx after the body was sent or a timeout is not repeated
(the PACS may hold the SEG already). ``error`` is the client's message (the operation and the
reason: down, refused, timed out, the HTTP status), never a UID.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from service.dicomweb import DicomwebClient, DicomwebConfig
from service.errors import PacsError

ClientFactory = Callable[..., DicomwebClient]


def pull_series(
    config: DicomwebConfig, study_uid: str, series_uid: str, client: ClientFactory = DicomwebClient
) -> list[bytes]:
    """Every instance of the series, in memory (WADO-RS, bounded by the config's limits).

    Raises:
        PacsError: the PACS is down, refused, timed out, or does not hold the series
            (PacsNotFoundError), or the series exceeds the limits (PacsTooLargeError).
    """
    with client(config) as pacs:
        return pacs.retrieve_series(study_uid, series_uid)


def store_seg(
    config: DicomwebConfig,
    seg: bytes,
    seg_uid: str,
    study_uid: str | None,
    client: ClientFactory = DicomwebClient,
) -> dict[str, Any]:
    """STOW-RS the SEG into its study; the store record (see the module docstring)."""
    attempts = 1

    def sleep(seconds: float) -> None:
        nonlocal attempts
        attempts += 1  # the client sleeps once before each further attempt
        time.sleep(seconds)

    record: dict[str, Any] = {"seg_sop_instance_uid": seg_uid, "stored": [], "failed": []}
    try:
        with client(config, sleep=sleep) as pacs:
            receipt = pacs.store([seg], study_uid)
    except PacsError as err:
        return record | {
            "status": "failed",
            "pacs_status": err.status,
            "attempts": attempts,
            "error": str(err),
            "retryable": err.retryable,
        }
    return record | {
        "status": "stored" if receipt.complete else "partial",
        "pacs_status": receipt.status,
        "stored": list(receipt.stored),
        "failed": [{"sop_instance_uid": uid, "reason": reason} for uid, reason in receipt.failed],
        "attempts": attempts,
        "error": None if receipt.complete else "the PACS reported failures for the SEG",
        "retryable": None,
    }
