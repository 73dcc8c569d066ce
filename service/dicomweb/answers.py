"""What DICOMweb answers mean: QIDO-RS series descriptions and STOW-RS receipts (DICOM JSON).

UIDs parsed here are for the caller; nothing logs them (their ``repr`` leaves them out).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidParameterError, PacsError

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# DICOM JSON tags
_SERIES_UID, _MODALITY, DESCRIPTION, NUMBER, INSTANCES = (
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


def check_uid(value: str, name: str) -> str:
    text = str(value).strip()
    if not (0 < len(text) <= 64 and UID_PATTERN.match(text)):
        raise InvalidParameterError(f"{name} is not a DICOM UID (digits and dots)", name)
    return text


def parse_json(body: bytes, operation: str) -> Any:
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


def series_info(item: dict[str, Any]) -> SeriesInfo:
    return SeriesInfo(
        series_uid=str(_first(item, _SERIES_UID) or ""),
        modality=str(_first(item, _MODALITY) or ""),
        description=str(_first(item, DESCRIPTION) or ""),
        number=_int(_first(item, NUMBER)),
        instances=_int(_first(item, INSTANCES)),
    )


def store_receipt(status: int, body: bytes, sent: int) -> StoreReceipt:
    answer = parse_json(body, "STOW-RS") if body.strip() else {}
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
