"""PNG and JPEG decoding with OpenCV, from bytes in memory.

Intensity rules (output is float32 ``(1, H, W)`` in [0, 1], ``units="display"``):

* 8-bit samples are divided by 255.
* 16-bit samples (PNG; 12-bit JPEG also decodes to uint16): if the brightest sample is
  >= 32768 (the top bit is used) the image is taken as full-range and divided by 65535;
  otherwise it holds fewer significant bits (a raw 10- to 15-bit detector export, where /65535
  would give a near-black image) and is scaled by :func:`robust_minmax`.
* Colour (BGR from OpenCV) becomes grey by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B);
  an image whose three channels are equal keeps that channel exactly. Alpha is dropped.

No EXIF orientation is applied (``IMREAD_UNCHANGED`` ignores it): the pixels come back in the
stored order, so a mask computed on them lines up with the stored image.
"""

from __future__ import annotations

import logging
import struct
from typing import Literal

import cv2
import numpy as np

from service.errors import InputTooLargeError, UnsupportedMediaError
from service.imaging.types import DecodedImage

logger = logging.getLogger(__name__)

FULL_RANGE_16BIT_MIN = 1 << 15
ROBUST_PERCENTILES = (0.5, 99.5)
_LUMA_RGB = (0.299, 0.587, 0.114)

# OpenCV: IMREAD_UNCHANGED (-1) keeps bit depth and alpha and never applies EXIF orientation
# (OpenCV applies orientation only when flags != IMREAD_UNCHANGED); -1 | IMREAD_IGNORE_ORIENTATION
# is -1 again, so IMREAD_UNCHANGED alone already has the "ignore orientation" semantics.
_IMREAD_FLAGS = cv2.IMREAD_UNCHANGED

# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic, JPEG-LS).
_JPEG_SOF = frozenset({*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC)}) | frozenset(
    {*range(0xCD, 0xD0), 0xF7}
)
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def png_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk, or None when the header is absent/short."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(height), int(width)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the first JPEG SOF marker, or None if none precedes the scan.

    Works on JPEG files and on JPEG / JPEG-LS codestreams in DICOM; a height of 0 (defined
    later by a DNL marker) is returned as is.
    """
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan: no frame header before it
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return int(height), int(width)
        pos += 2 + length
    return None


def j2k_size(codestream: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG 2000 SIZ marker segment (raw codestream or JP2), or None."""
    start = codestream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if start < 0 or len(codestream) < start + 24:
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", codestream[start + 8 : start + 24])
    return max(ysiz - yosiz, 0), max(xsiz - xosiz, 0)


def check_pixel_limit(height: int, width: int, frames: int, max_pixels: int, what: str) -> None:
    """Raise InputTooLargeError when ``height * width * frames`` exceeds ``max_pixels``."""
    total = height * width * frames
    if total > max_pixels:
        raise InputTooLargeError(
            f"{what} is {width}x{height} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" = {total} pixels, more than the limit of {max_pixels}; downsample it first"
        )


def robust_minmax(values: np.ndarray) -> np.ndarray:
    """Map the 0.5th..99.5th percentile of ``values`` to 0..1, clipped; float32, same shape.

    A constant image (no spread between the percentiles) maps to all zeros.
    """
    lo, hi = np.percentile(values, ROBUST_PERCENTILES)
    if not hi > lo:
        return np.zeros(values.shape, dtype=np.float32)
    scaled = (values.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey float32 ``(..., H, W)`` from ``(..., H, W, 3)`` RGB (channel order R, G, B)."""
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(red, green) and np.array_equal(red, blue):
        return red.astype(np.float32)
    weights = np.asarray(_LUMA_RGB, dtype=np.float32)
    return (rgb.astype(np.float32) @ weights).astype(np.float32, copy=False)


def decode_raster(
    data: bytes, source_format: Literal["png", "jpeg"], *, max_pixels: int
) -> DecodedImage:
    """Decode PNG or JPEG bytes to a DecodedImage of float32 ``(1, H, W)`` display values.

    Raises:
        InputTooLargeError: header dimensions exceed ``max_pixels`` (checked before decoding).
        UnsupportedMediaError: the bytes do not decode (corrupt or truncated file).
    """
    kind = source_format
    size = png_size(data) if kind == "png" else jpeg_size(data)
    if size is not None:
        if 0 in size and kind == "png":
            raise UnsupportedMediaError("PNG header declares a zero width or height")
        check_pixel_limit(size[0], size[1], 1, max_pixels, f"{kind.upper()} image")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _IMREAD_FLAGS)
    if image is None or image.size == 0:
        raise UnsupportedMediaError(
            f"the {kind.upper()} file could not be decoded: it is corrupt or truncated"
        )
    check_pixel_limit(image.shape[0], image.shape[1], 1, max_pixels, f"{kind.upper()} image")
    samples = _drop_alpha(image)
    pixels, bits = _to_display(_to_grey(samples), samples)
    logger.debug("decoded %s %s dtype=%s channels=%d", kind, image.shape, image.dtype, _nch(image))
    return DecodedImage(
        pixels=pixels[np.newaxis],
        units="display",
        modality=None,
        source_format=kind,
        spacing_mm=None,
        bits_stored=bits,
        photometric="MONOCHROME2" if samples.ndim == 2 else "RGB",
    )


def _nch(image: np.ndarray) -> int:
    return 1 if image.ndim == 2 else int(image.shape[2])


def _drop_alpha(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey or ``(H, W, 3)`` BGR samples of an OpenCV image, alpha removed."""
    channels = _nch(image)
    if channels == 1:
        return image.reshape(image.shape[:2])
    if channels == 2:  # grey + alpha
        return image[:, :, 0]
    return image[:, :, :3]  # BGR, or BGRA without A


def _to_grey(samples: np.ndarray) -> np.ndarray:
    """Grey float32 ``(H, W)`` in the source's sample scale (BT.601 luma for BGR)."""
    if samples.ndim == 2:
        return samples.astype(np.float32)
    return luma(samples[:, :, ::-1])


def _to_display(grey: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """Apply the module's intensity rules; returns ([0, 1] float32 grey, bits per sample).

    The 16-bit full-range test looks at the brightest colour sample, not at the luma.
    """
    if samples.dtype == np.uint8:
        return (grey / np.float32(255.0)).astype(np.float32, copy=False), 8
    if samples.dtype == np.uint16:
        if int(samples.max()) >= FULL_RANGE_16BIT_MIN:
            return (grey / np.float32(65535.0)).astype(np.float32, copy=False), 16
        return robust_minmax(grey), 16
    raise UnsupportedMediaError(f"unsupported sample type {samples.dtype} in the image")
