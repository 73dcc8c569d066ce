"""How an image is shown to a person: the viewer's ``POST /v1/render`` and the report's gallery.

The decoded first frame in its stored pixel order and size (so masks line up), as 8-bit gray:
radiographs as decoded (VOI window applied), CT in Hounsfield units through a display window.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.types import DecodedImage
from service.pipeline.params import CtWindow, PreprocessParams
from service.pipeline.preprocess import to_display

LUNG_WINDOW = CtWindow(level=-600.0, width=1500.0)


def display_frame(image: DecodedImage, window: CtWindow = LUNG_WINDOW) -> np.ndarray:
    """The first frame as uint8 ``(H, W)``; CT in HU is windowed with ``window``, no CLAHE."""
    params = PreprocessParams(ct_window=window, ct_clahe=None, ct_minmax=False)
    shown = to_display(image.frame(0), image.units, params)
    return np.round(shown * 255.0).astype(np.uint8)


def png_bytes(gray: np.ndarray) -> bytes:
    """Encode a uint8 ``(H, W)`` array as PNG."""
    ok, buffer = cv2.imencode(".png", gray)
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return buffer.tobytes()
