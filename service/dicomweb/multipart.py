"""``multipart/related`` bodies (RFC 2387) as DICOMweb sends and takes them, in memory.

:class:`MultipartReader` is fed the chunks of a body as they arrive and hands back each part's
bytes as soon as its closing delimiter is seen, so a caller can count and bound what it holds;
:func:`multipart_body` writes one (STOW-RS) as a sequence of chunks without joining them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence

MAX_PART_HEADERS = 16 * 1024
"""Most bytes of one part's header block (a few short lines in practice)."""


class MultipartError(ValueError):
    """The body is not a well-formed multipart body (no boundary, truncated, garbled)."""


def boundary_of(content_type: str) -> bytes:
    """The ``boundary`` parameter of a ``multipart/...`` Content-Type."""
    kind, _, params = content_type.partition(";")
    if not kind.strip().lower().startswith("multipart/"):
        raise MultipartError(f"not a multipart body ({kind.strip() or 'no Content-Type'})")
    for param in _params(params):
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
            if 0 < len(boundary) <= 200:
                return boundary.encode("latin-1")
    raise MultipartError("the multipart Content-Type has no boundary")


def _params(text: str) -> list[str]:
    """Split ``a=1; b="x;y"`` at the semicolons outside quotes."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return [p for p in out if p.strip()]


class MultipartReader:
    """Incremental parser: ``feed(chunk)`` returns the parts completed by that chunk, each as
    ``(headers, body)`` with lower-case header names; ``finish()`` checks the closing
    delimiter arrived."""

    def __init__(self, boundary: bytes) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")  # so the first delimiter needs no special case
        self._state = "preamble"
        self._scanned = 0
        self._headers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state == "end"

    def feed(self, chunk: bytes) -> list[tuple[dict[str, str], bytes]]:
        if self._state == "end":
            return []  # the epilogue is ignored
        self._buffer += chunk
        parts: list[tuple[dict[str, str], bytes]] = []
        while True:
            if self._state in ("preamble", "body"):
                start = max(self._scanned - len(self._delimiter), 0)
                found = self._buffer.find(self._delimiter, start)
                if found < 0:
                    self._scanned = len(self._buffer)
                    if self._state == "preamble" and len(self._buffer) > MAX_PART_HEADERS:
                        raise MultipartError("no multipart boundary at the start of the body")
                    return parts
                if self._state == "body":
                    parts.append((self._headers, bytes(self._buffer[:found])))
                del self._buffer[: found + len(self._delimiter)]
                self._scanned = 0
                self._state = "after-delimiter"
            if self._state == "after-delimiter":
                line_end = self._buffer.find(b"\r\n")
                if self._buffer[:2] == b"--":
                    self._state = "end"
                    self._buffer.clear()
                    return parts
                if line_end < 0:
                    if len(self._buffer) > 1024:
                        raise MultipartError("garbage after a multipart boundary")
                    return parts
                if self._buffer[:line_end].strip(b" \t"):
                    raise MultipartError("garbage after a multipart boundary")
                del self._buffer[: line_end + 2]
                self._state = "headers"
            if self._state == "headers":
                end = self._buffer.find(b"\r\n\r\n")
                if self._buffer[:2] == b"\r\n":  # a part without headers
                    end, skip = 0, 2
                else:
                    skip = 4
                if end < 0:
                    if len(self._buffer) > MAX_PART_HEADERS:
                        raise MultipartError("a multipart part's headers are too long")
                    return parts
                self._headers = _headers(bytes(self._buffer[:end]))
                del self._buffer[: end + skip]
                self._state = "body"
                self._scanned = 0

    def finish(self) -> None:
        """Raise MultipartError unless the closing delimiter was seen."""
        if self._state != "end":
            raise MultipartError("the multipart body ended before its closing boundary")


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def new_boundary() -> str:
    return f"lungseg-{secrets.token_hex(16)}"


def multipart_body(
    parts: Sequence[bytes], boundary: str, media_type: str = "application/dicom"
) -> tuple[int, Iterator[bytes]]:
    """(total length, chunks) of a multipart body of ``parts``, each of ``media_type``."""
    head = f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode("latin-1")
    middle = b"\r\n" + head
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length = len(head) + sum(len(p) for p in parts) + len(middle) * (len(parts) - 1) + len(tail)

    def chunks() -> Iterator[bytes]:
        for index, part in enumerate(parts):
            yield head if index == 0 else middle
            yield part
        yield tail

    return length, chunks()
