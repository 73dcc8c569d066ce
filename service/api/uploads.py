"""Reading an upload from the request body: in memory, bounded, and at a sane pace.

An upload is the file in a multipart/form-data part named ``file`` (``curl -F file=@x.dcm``;
a volume may come as several parts named ``file``: :func:`read_uploads`),
or the whole body with the file's own media type (``application/dicom``, as DICOMweb
clients and PACS bridges post it; also ``application/octet-stream``, ``image/png``,
``image/jpeg``). Nothing is written to disk: patient images stay in memory.

Guards, so that neither a large nor a slow client can hold a worker: a declared
``Content-Length`` over the limit is refused before anything is read (413); the bytes are
counted while they stream in, with or without a Content-Length (413); a body that stops
arriving for ``idle_timeout_s``, that arrives slower than ``min_bytes_per_s`` on average (after
a grace of ``GRACE_S``), or that is not complete after ``deadline_s`` is refused (408), so slow
senders cannot hold the worker's admissions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.errors import (
    EmptyInputError,
    InputTooLargeError,
    InvalidInputError,
    UnsupportedMediaError,
    UploadTimeoutError,
)

FIELD = "file"
MULTIPART_SLACK = 1 << 20
"""Bytes a multipart body may hold beyond the file itself (boundaries, headers, other fields)."""
PART_SLACK = 4096
"""Further bytes per allowed part of a body with several files (its boundary and headers)."""
RAW_TYPES = frozenset(
    {"application/dicom", "application/octet-stream", "image/png", "image/jpeg", "image/jpg"}
)
MULTIPART = "multipart/form-data"
GRACE_S = 5.0
"""Seconds at the start of a body before its average rate is checked (connection set-up)."""

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the file: multipart field `file`, or the file itself as the body",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
"""The OpenAPI request body of a route that takes an image upload (``openapi_extra``)."""


@dataclass(frozen=True)
class Upload:
    """An uploaded file: its bytes and the file name the client gave (multipart only; it is
    never logged)."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class UploadLimits:
    """``max_bytes``: the largest file; ``idle_timeout_s``: the longest pause in the body;
    ``min_bytes_per_s``: the lowest average rate (0: none); ``deadline_s``: the longest time
    the whole body may take (0: none)."""

    max_bytes: int
    idle_timeout_s: float
    min_bytes_per_s: float = 0.0
    deadline_s: float = 0.0

    def wait_s(self, elapsed: float, received: int) -> tuple[float, str]:
        """How long the next chunk may take, and what is refused when it takes longer."""
        waits = [(self.idle_timeout_s, f"no data for {self.idle_timeout_s:g} s")]
        if self.deadline_s > 0:
            waits.append((self.deadline_s - elapsed, f"not complete after {self.deadline_s:g} s"))
        if self.min_bytes_per_s > 0:
            due = GRACE_S + received / self.min_bytes_per_s - elapsed
            waits.append((due, f"slower than {self.min_bytes_per_s:g} bytes/s"))
        wait, reason = min(waits)
        return max(wait, 0.0), reason


def media_type(request: Request) -> tuple[str, dict[bytes, bytes]]:
    """The request's Content-Type, lower-case, and its parameters."""
    value, options = parse_options_header(request.headers.get("content-type", ""))
    return value.decode("latin-1").lower(), options


async def _chunks(request: Request, limits: UploadLimits, budget: int) -> AsyncIterator[bytes]:
    """The body's chunks, refused past ``budget`` bytes or after a pause of idle_timeout_s."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise InputTooLargeError(
            f"request body of {int(declared)} bytes exceeds the limit ({budget} bytes)"
        )
    stream = request.stream().__aiter__()
    received = 0
    start = time.monotonic()
    while True:
        wait, reason = limits.wait_s(time.monotonic() - start, received)
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), wait)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadTimeoutError(f"the upload stalled: {reason}") from None
        except ClientDisconnect:
            raise InvalidInputError("the client closed the connection during the upload") from None
        received += len(chunk)
        if received > budget:
            raise InputTooLargeError(f"request body exceeds the limit ({budget} bytes)")
        yield chunk


async def read_body(request: Request, limits: UploadLimits, budget: int) -> bytes:
    """The whole body, at most ``budget`` bytes, within ``limits``' pace (a small JSON)."""
    return b"".join([chunk async for chunk in _chunks(request, limits, budget)])


async def read_upload(request: Request, limits: UploadLimits) -> Upload:
    """The uploaded file's bytes (see the module docstring).

    Raises:
        InputTooLargeError: more than ``limits.max_bytes`` (plus multipart slack).
        UploadTimeoutError: the body paused longer than ``limits.idle_timeout_s``.
        EmptyInputError: the file is empty.
        InvalidInputError: a multipart body without a ``file`` part, or a malformed one.
        UnsupportedMediaError: another Content-Type.
    """
    (upload,) = await read_uploads(request, limits, max_parts=1)
    return upload


async def read_uploads(
    request: Request,
    limits: UploadLimits,
    max_parts: int,
    raw_types: frozenset[str] = RAW_TYPES,
) -> list[Upload]:
    """The uploaded files: every multipart part named ``file`` (at most ``max_parts``; with
    ``max_parts=1`` later ``file`` parts are ignored), or the whole body when its Content-Type
    is one of ``raw_types``. ``limits.max_bytes`` bounds the files together.

    Raises: as :func:`read_upload`; InputTooLargeError also for more than ``max_parts`` parts.
    """
    kind, options = media_type(request)
    if kind == MULTIPART:
        uploads = await _multipart_files(request, limits, options.get(b"boundary", b""), max_parts)
    elif kind in raw_types or not kind:
        data = b"".join([c async for c in _chunks(request, limits, limits.max_bytes)])
        if data and not kind:
            raise UnsupportedMediaError(
                "the request has a body but no Content-Type: send multipart/form-data with the "
                f"file in a part named {FIELD!r}, or the file as the body (application/dicom)"
            )
        uploads = [Upload(data)]
    else:
        raise UnsupportedMediaError(
            f"Content-Type {kind or '(none)'} is not accepted: send multipart/form-data with the "
            f"file in a part named {FIELD!r}, or the file as the body (application/dicom)"
        )
    if sum(len(u.data) for u in uploads) > limits.max_bytes:
        raise InputTooLargeError(f"the upload exceeds {limits.max_bytes} bytes")
    if not any(u.data for u in uploads):
        raise EmptyInputError("the upload is empty (0 bytes): send a DICOM, PNG or JPEG file")
    return [u for u in uploads if u.data]


class _FileParts:
    """python-multipart callbacks that keep the bytes of the parts named ``file`` (the first
    ``max_parts``: with one, later ``file`` parts are ignored; with more, one too many is
    refused), at most ``limit`` bytes together."""

    def __init__(self, limit: int, max_parts: int) -> None:
        self.limit = limit
        self.max_parts = max_parts
        self.parts: list[tuple[bytearray, str | None]] = []
        self.size = 0
        self._header = b""
        self._disposition = b""
        self._current: bytearray | None = None

    @property
    def found(self) -> bool:
        return bool(self.parts)

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._field,
            "on_header_value": self._value,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
        }

    def _begin(self) -> None:
        self._header, self._disposition, self._current = b"", b"", None

    def _field(self, data: bytes, start: int, end: int) -> None:
        self._header = data[start:end].lower()

    def _value(self, data: bytes, start: int, end: int) -> None:
        if self._header == b"content-disposition":
            self._disposition += data[start:end]

    def _headers_done(self) -> None:
        _, params = parse_options_header(self._disposition)
        if params.get(b"name") != FIELD.encode():
            return
        if len(self.parts) == self.max_parts:
            if self.max_parts == 1:
                return  # one file asked for: the first part named file is it
            raise InputTooLargeError(
                f"the upload has more than {self.max_parts} parts named {FIELD!r}: zip the files"
            )
        name = params[b"filename"].decode("utf-8", "replace") if b"filename" in params else None
        self._current = bytearray()
        self.parts.append((self._current, name))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None:
            self._current += data[start:end]
            self.size += end - start
            if self.size > self.limit:
                raise InputTooLargeError(f"the upload exceeds {self.limit} bytes")


async def _multipart_files(
    request: Request, limits: UploadLimits, boundary: bytes, max_parts: int
) -> list[Upload]:
    if not boundary:
        raise InvalidInputError("multipart/form-data without a boundary parameter")
    parts = _FileParts(limits.max_bytes, max_parts)
    parser = MultipartParser(boundary, parts.callbacks())  # type: ignore[arg-type]
    slack = MULTIPART_SLACK + PART_SLACK * max_parts  # part headers and boundaries
    try:
        async for chunk in _chunks(request, limits, limits.max_bytes + slack):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as err:
        raise InvalidInputError(f"the multipart body is malformed: {err}") from err
    if not parts.found:
        raise InvalidInputError(
            f"the multipart body has no part named {FIELD!r}: send the file as "
            f"-F {FIELD}=@image.dcm"
        )
    return [Upload(bytes(data), name) for data, name in parts.parts]
