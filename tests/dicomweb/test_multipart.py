"""multipart/related: the bounded incremental reader and the writer."""

from __future__ import annotations

import pytest

from service.dicomweb.multipart import (
    MultipartError,
    MultipartReader,
    boundary_of,
    multipart_body,
)

PARTS = [b"DICM" + bytes(range(256)) * 40, b"", b"\r\n--not-the-boundary\r\n", b"x" * 70_000]


def _read(body: bytes, boundary: bytes, step: int) -> list[bytes]:
    reader = MultipartReader(boundary)
    parts: list[bytes] = []
    for start in range(0, len(body), step):
        parts += [b for _, b in reader.feed(body[start : start + step])]
    reader.finish()
    return parts


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_round_trip_in_any_chunk_size(step: int) -> None:
    length, chunks = multipart_body(PARTS, "b0und4ry")
    body = b"".join(chunks)
    assert len(body) == length
    assert _read(body, b"b0und4ry", step) == PARTS


def test_preamble_epilogue_headers_and_padding() -> None:
    body = (
        b"preamble text\r\n--xyz  \r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\n"
        b"abc\r\n--xyz\r\n\r\ndef\r\n--xyz--\r\nepilogue"
    )
    reader = MultipartReader(b"xyz")
    parts = reader.feed(body)
    reader.finish()
    assert [b for _, b in parts] == [b"abc", b"def"]
    assert parts[0][0]["content-type"] == "application/dicom"


def test_boundary_of() -> None:
    assert boundary_of('multipart/related; type="application/dicom"; boundary="a;b"') == b"a;b"
    assert boundary_of("Multipart/Related; boundary=abc") == b"abc"
    with pytest.raises(MultipartError, match="not a multipart"):
        boundary_of("application/dicom+json")
    with pytest.raises(MultipartError, match="no boundary"):
        boundary_of('multipart/related; type="application/dicom"')


def test_truncated_and_garbled_bodies() -> None:
    _, chunks = multipart_body([b"abc", b"def"], "q")
    body = b"".join(chunks)
    reader = MultipartReader(b"q")
    reader.feed(body[:-10])
    with pytest.raises(MultipartError, match="before its closing"):
        reader.finish()
    with pytest.raises(MultipartError, match="garbage"):
        MultipartReader(b"q").feed(b"--qXYZ\r\n\r\nabc")
    with pytest.raises(MultipartError, match="no multipart boundary"):
        MultipartReader(b"q").feed(b"x" * 20_000)
    with pytest.raises(MultipartError, match="headers are too long"):
        MultipartReader(b"q").feed(b"--q\r\n" + b"h" * 20_000)
