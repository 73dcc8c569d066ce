"""Entry point: bytes of one upload -> DecodedImage (format sniffed from the content)."""

from __future__ import annotations

import logging

from service.errors import EmptyInputError, InvalidParameterError
from service.imaging.dicom import decode_dicom
from service.imaging.raster import decode_raster
from service.imaging.sniff import sniff
from service.imaging.types import DecodedImage

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 80_000_000
"""Default limit on height x width x frames (80 megapixels), checked from headers."""


def decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, threads: int = 1) -> DecodedImage:
    """Decode one uploaded DICOM, PNG or JPEG file held in memory.

    Args:
        data: the file's bytes.
        max_pixels: largest accepted height x width x frames, checked from the file's header
            before any pixel data is decompressed.
        threads: threads that may decompress one JPEG 2000 DICOM frame (other formats: one).

    Returns:
        DecodedImage with float32 pixels of shape ``(frames, H, W)`` in stored pixel order:
        Hounsfield units for CT DICOM, else display values in [0, 1] (1 = bright).

    Raises:
        EmptyInputError: ``data`` is empty.
        UnsupportedMediaError: not DICOM/PNG/JPEG, corrupt or truncated, or non-image DICOM.
        UnsupportedModalityError: DICOM of a modality other than CT or chest radiography.
        InputTooLargeError: more than ``max_pixels`` pixels.
        InvalidParameterError: ``max_pixels`` is not a positive integer.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise InvalidParameterError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if not data:
        raise EmptyInputError("the upload is empty (0 bytes): send a DICOM, PNG or JPEG file")
    source_format = sniff(data)
    logger.debug("decoding %d bytes as %s", len(data), source_format)
    if source_format == "dicom":
        return decode_dicom(data, max_pixels=max_pixels, threads=threads)
    return decode_raster(data, source_format, max_pixels=max_pixels)
