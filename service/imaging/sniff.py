"""Detect an upload's format from its leading bytes (never from a file name or client MIME type).

Also the byte-level DICOM checks that must run before pydicom parses a file: the deflated
dataset size guard (:func:`check_deflated_size`) and the exceptions pydicom raises on bad input.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib

import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from service.errors import InputTooLargeError, UnsupportedMediaError
from service.imaging.types import SourceFormat

logger = logging.getLogger(__name__)

ACCEPTED_TYPES = "DICOM (.dcm), PNG or JPEG"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8\xff"
DICOM_PREFIX_OFFSET = 128
DICOM_PREFIX = b"DICM"
_DEFLATED_UID = b"1.2.840.10008.1.2.1.99"
_INFLATE_OVERHEAD = 16 << 20  # bytes allowed for non-pixel elements of a deflated dataset
_BYTES_PER_PIXEL_BOUND = 8  # 3 samples x 16 bits = 6 bytes, rounded up

# pydicom reading arbitrary bytes with force=True can fail in many ways (it was never meant to
# validate input), and its pylibjpeg / openjpeg decoders raise RuntimeError on bad codestreams.
# These are the exception types they raise on malformed data (list checked by fuzzing the
# decoder with corrupted and truncated real files); anything else is a bug and propagates.
PYDICOM_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,
    ValueError,
    KeyError,
    IndexError,
    AttributeError,
    TypeError,
    RuntimeError,
    NotImplementedError,
    OSError,
    EOFError,
    OverflowError,
    struct.error,
    zlib.error,
)
PYDICOM_PIXEL_ERRORS: tuple[type[BaseException], ...] = (*PYDICOM_PARSE_ERRORS, StopIteration)
"""Also ``StopIteration``: pydicom's frame generators raise it when the pixel data holds fewer
frames than Number of Frames declares."""

# A DICOM file without preamble starts with an element tag of group 0x0002 (file meta) or
# 0x0008 (identifying attributes), little endian; big endian group 0x0008 is also accepted.
_BARE_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")


def sniff(data: bytes) -> SourceFormat:
    """Return ``"dicom"``, ``"png"`` or ``"jpeg"`` from the magic bytes of ``data``.

    DICOM is recognised by ``"DICM"`` at offset 128, or (preamble-less DICOM) when pydicom can
    parse the bytes with ``force=True`` into a dataset that has Rows, Columns and Pixel Data.

    Raises:
        UnsupportedMediaError: for anything else; the message names the accepted types.
    """
    if data[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] == DICOM_PREFIX:
        return "dicom"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SOI):
        return "jpeg"
    if _is_bare_dicom_image(data):
        return "dicom"
    raise UnsupportedMediaError(
        f"unsupported file type: expected {ACCEPTED_TYPES}; the upload's leading bytes match "
        "none of them"
    )


def _is_bare_dicom_image(data: bytes) -> bool:
    """True when ``data`` is preamble-less DICOM that parses sensibly as an image."""
    if data[:2] not in _BARE_DICOM_GROUPS:
        return False
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        rows, columns = ds.get("Rows"), ds.get("Columns")
        has_pixels = "PixelData" in ds
    except PYDICOM_PARSE_ERRORS as exc:
        logger.debug("bytes look like bare DICOM but do not parse: %s", type(exc).__name__)
        return False
    sensible = isinstance(rows, int) and isinstance(columns, int) and has_pixels
    logger.debug("preamble-less DICOM candidate parsed; sensible image: %s", sensible)
    return sensible


def check_deflated_size(data: bytes, max_pixels: int) -> None:
    """For Deflated Explicit VR Little Endian DICOM, inflate (bounded, output discarded) first.

    pydicom inflates the whole dataset in one unbounded ``zlib.decompress`` call, so a small
    upload could expand to gigabytes; this counts the inflated size in 1 MiB steps instead.

    Raises:
        InputTooLargeError: the dataset expands beyond ``max_pixels`` x 8 bytes + 16 MiB.
        UnsupportedMediaError: the deflate stream is corrupt.
    """
    if data[132:136] != b"\x02\x00\x00\x00" or data[136:138] != b"UL" or len(data) < 144:
        return
    (meta_length,) = struct.unpack("<I", data[140:144])
    if _DEFLATED_UID not in data[144 : 144 + meta_length]:
        return
    limit = max_pixels * _BYTES_PER_PIXEL_BOUND + _INFLATE_OVERHEAD
    inflater, pending, total = zlib.decompressobj(-zlib.MAX_WBITS), data[144 + meta_length :], 0
    try:
        while not inflater.eof:
            chunk = inflater.decompress(pending, 1 << 20)
            total += len(chunk)
            if total > limit:
                raise InputTooLargeError(
                    f"the deflated DICOM dataset expands to more than {limit} bytes"
                )
            pending = inflater.unconsumed_tail
            if not chunk and not pending:
                raise UnsupportedMediaError("the deflated DICOM dataset is truncated")
    except zlib.error as exc:
        raise UnsupportedMediaError("the deflated DICOM dataset is corrupt") from exc
