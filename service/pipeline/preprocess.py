"""Preprocessing: a decoded frame becomes the model's input tensor.

One implementation for training, export checks and the service. The stages are split so that
training can augment between :func:`prepare` (display values at model resolution) and
:func:`normalise`.
"""

from __future__ import annotations

import cv2
import numpy as np

from service.imaging.types import Units
from service.pipeline.params import Clahe, CtWindow, PreprocessParams


def window_hu(frame_hu: np.ndarray, window: CtWindow) -> np.ndarray:
    """Map Hounsfield units to display values.

    Args:
        frame_hu: float array ``(H, W)`` in HU.
        window: the CT window.

    Returns:
        float32 ``(H, W)`` in [0, 1]: ``window.low`` HU and below -> 0,
        ``window.high`` and above -> 1.
    """
    scaled = (frame_hu.astype(np.float32) - np.float32(window.low)) / np.float32(window.width)
    return np.clip(scaled, 0.0, 1.0)


def minmax(frame: np.ndarray) -> np.ndarray:
    """Min-max normalise a float ``(H, W)`` frame to [0, 1]; a constant frame becomes all 0."""
    lo, hi = float(frame.min()), float(frame.max())
    if hi <= lo:
        return np.zeros_like(frame, dtype=np.float32)
    return ((frame - lo) / (hi - lo)).astype(np.float32)


def apply_clahe(frame: np.ndarray, clahe: Clahe) -> np.ndarray:
    """CLAHE on a [0, 1] float frame, computed on its 8-bit quantisation as OpenCV does.

    Returns:
        float32 ``(H, W)`` in [0, 1].
    """
    as_u8 = np.round(np.clip(frame, 0.0, 1.0) * 255.0).astype(np.uint8)
    op = cv2.createCLAHE(clipLimit=clahe.clip_limit, tileGridSize=(clahe.tile_grid,) * 2)
    return op.apply(as_u8).astype(np.float32) / np.float32(255.0)


def to_display(frame: np.ndarray, units: Units, params: PreprocessParams) -> np.ndarray:
    """Bring a frame to the display representation the model learned on.

    Args:
        frame: float ``(H, W)``; HU when ``units == "hu"``, else display values in [0, 1].
        units: ``"hu"`` or ``"display"``.
        params: the model's preprocessing parameters (window, CLAHE, min-max for CT in HU).

    Returns:
        float32 ``(H, W)`` in [0, 1], same size as ``frame``.
    """
    if units == "display":
        return np.clip(frame.astype(np.float32), 0.0, 1.0)
    shown = window_hu(frame, params.ct_window)
    if params.ct_minmax:
        shown = minmax(shown)
    if params.ct_clahe is not None:
        shown = apply_clahe(shown, params.ct_clahe)
    return shown


def resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float ``(H, W)`` frame to ``size = (height, width)``.

    Area interpolation when shrinking (no aliasing), bilinear when enlarging.
    """
    height, width = size
    if frame.shape == (height, width):
        return frame.astype(np.float32, copy=False)
    shrinking = height * width < frame.shape[0] * frame.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(
        frame.astype(np.float32, copy=False), (width, height), interpolation=interpolation
    )


def denoise(frame: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian noise reduction with standard deviation ``sigma`` pixels (0 returns the input)."""
    if sigma <= 0:
        return frame
    return cv2.GaussianBlur(frame, (0, 0), sigmaX=sigma, sigmaY=sigma)


def prepare(frame: np.ndarray, units: Units, params: PreprocessParams) -> np.ndarray:
    """Display values at model resolution: window (CT in HU), resize, noise reduction.

    Returns:
        float32 ``params.size`` array in [0, 1].
    """
    shown = to_display(frame, units, params)
    return denoise(resize(shown, params.size), params.denoise_sigma)


def normalise(display: np.ndarray, params: PreprocessParams) -> np.ndarray:
    """``(display - mean) / std`` as float32, any shape."""
    return ((display - np.float32(params.mean)) / np.float32(params.std)).astype(np.float32)


def preprocess(frame: np.ndarray, units: Units, params: PreprocessParams) -> np.ndarray:
    """The whole way from a decoded frame to a model input.

    Args:
        frame: float ``(H, W)`` (HU or display, see ``units``).
        units: ``"hu"`` or ``"display"``.
        params: the model card's preprocessing parameters.

    Returns:
        float32 ``(1, height, width)`` (one channel) at ``params.size``.
    """
    return normalise(prepare(frame, units, params), params)[np.newaxis]
