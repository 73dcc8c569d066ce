"""Encoding of final masks for the wire: COCO RLE or base64 PNG (0/255)."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from service.pipeline import rle


def to_png_base64(mask: np.ndarray) -> str:
    """Bool ``(H, W)`` mask -> base64 of an 8-bit grayscale PNG with 0 / 255 pixels."""
    ok, buffer = cv2.imencode(".png", mask.astype(np.uint8) * 255)
    if not ok:
        raise ValueError("OpenCV could not encode the mask as PNG")
    return base64.b64encode(buffer.tobytes()).decode("ascii")


def encode_mask(mask: np.ndarray, fmt: str) -> rle.CocoRle | str:
    """Encode a bool ``(H, W)`` mask as ``"rle"`` (COCO RLE dict) or ``"png"`` (base64 str)."""
    return rle.encode(mask) if fmt == "rle" else to_png_base64(mask)
