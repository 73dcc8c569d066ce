"""The ``png`` output format: every frame's masks as base64 8-bit grayscale PNG (0 / 255)."""

from __future__ import annotations

import base64

import cv2
import numpy as np

from service.pipeline.result import EncodedMasks, Segmentation

FORMAT = "png"


def png_bytes(gray: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` array as PNG."""
    ok, buffer = cv2.imencode(".png", gray)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return bytes(buffer.tobytes())


def to_png_base64(mask: np.ndarray) -> str:
    """Bool ``(H, W)`` mask -> base64 of an 8-bit grayscale PNG with 0 / 255 pixels."""
    return base64.b64encode(png_bytes(mask.astype(np.uint8) * 255)).decode("ascii")


def encode_result(result: Segmentation) -> EncodedMasks:
    """Every frame's masks as ``{"lung": base64 PNG, "infection": base64 PNG}``."""
    frames = [
        {"lung": to_png_base64(f.masks.lung), "infection": to_png_base64(f.masks.infection)}
        for f in result.frames
    ]
    return EncodedMasks(FORMAT, frames)
