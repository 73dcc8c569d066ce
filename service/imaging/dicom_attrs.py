"""Narrow access to pydicom: its errors on malformed input become ``UnsupportedMediaError``
at the call that raised them, so that an error in our own code is never mistaken for a bad
file (it propagates and becomes a 500 with its request id in the log).

pydicom parses element values lazily: with ``force=True`` a malformed value raises only when
it is read, and its pixel handlers raise many kinds of errors on corrupt codestreams
(``PYDICOM_PARSE_ERRORS``, the list checked by fuzzing the decoder with corrupted and
truncated real files). Every read of an attribute and every pydicom function applied to a
dataset goes through :func:`attr` or :func:`pydicom_call`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom.dataset import Dataset

from service.errors import UnsupportedMediaError
from service.imaging.sniff import PYDICOM_PIXEL_ERRORS


@contextmanager
def pydicom_call(what: str) -> Iterator[None]:
    """Run a pydicom call; its errors on bad data raise UnsupportedMediaError naming ``what``."""
    try:
        yield
    except PYDICOM_PIXEL_ERRORS as exc:
        raise UnsupportedMediaError(
            f"the DICOM file is corrupt or inconsistent: {what} failed ({type(exc).__name__})"
        ) from exc


def attr(ds: Dataset, keyword: str, default: Any = None) -> Any:
    """``ds.get(keyword, default)``; a value that cannot be parsed raises UnsupportedMediaError."""
    with pydicom_call(f"reading {keyword}"):
        return ds.get(keyword, default)


def text(ds: Dataset, keyword: str, limit: int = 64) -> str:
    """A string attribute stripped and upper-cased (at most ``limit`` characters); "" if absent."""
    value = attr(ds, keyword)
    return str(value or "").strip().upper()[:limit]


def uid(ds: Dataset, keyword: str) -> str | None:
    """A UID attribute as a plain string, or None when absent or empty."""
    value = attr(ds, keyword)
    return str(value).strip() or None if value else None
