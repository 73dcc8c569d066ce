"""How an image is shown to a person: ``POST /v1/render`` (the viewer) and the offline report.

The decoded first frame in its stored pixel order and size (so masks line up), as 8-bit gray:
radiographs as decoded (VOI window applied), CT in Hounsfield units through a display window.
"""

from __future__ import annotations

import numpy as np

from service.encoders.png import png_bytes
from service.imaging.types import DecodedImage
from service.pipeline.params import CtWindow, PreprocessParams
from service.pipeline.preprocess import to_display

LUNG_WINDOW = CtWindow(level=-600.0, width=1500.0)


def display_frame(image: DecodedImage, window: CtWindow = LUNG_WINDOW) -> np.ndarray:
    """The first frame as uint8 ``(H, W)``; CT in HU is windowed with ``window``, no CLAHE."""
    params = PreprocessParams(ct_window=window, ct_clahe=None, ct_minmax=False)
    shown = to_display(image.frame(0), image.units, params)
    return np.round(shown * 255.0).astype(np.uint8)


def render_png(image: DecodedImage, window: CtWindow = LUNG_WINDOW) -> bytes:
    """The first frame as displayed (see :func:`display_frame`), as PNG bytes."""
    return png_bytes(display_frame(image, window))
