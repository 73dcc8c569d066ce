"""The classical, model-free threshold segmenter: the seed project's "Thresholding" model.

It is the service's fallback when no trained model is available, and the baseline every model
is compared with (``docs/baseline.md``). It implements the :class:`~service.models.base.Backend`
protocol; the algorithms live in :mod:`service.models.threshold_ct` (CT, in Hounsfield units or
windowed display values) and :mod:`service.models.threshold_cxr` (chest X-ray).

Its "probabilities" are hard decisions with a fixed confidence: ``confidence`` inside a mask and
``1 - confidence`` outside (0.95 / 0.05 by default). They are not calibrated; the fixed value only
keeps the benchmark's cross-entropy finite and comparable (a hard 0/1 map would be clipped to
1e-6 and dominate the loss). ``to_masks`` with the default threshold 0.5 gives back the masks.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from service.imaging.types import Modality, Units
from service.models.base import ModelInfo
from service.models.threshold_ct import CtThresholds, segment_display, segment_hu
from service.models.threshold_cxr import CxrThresholds, segment
from service.pipeline.params import CtWindow, PostprocessParams
from service.pipeline.preprocess import window_hu

log = logging.getLogger(__name__)

VERSION = "1.0.0"
DEFAULT_LONG_SIDE: dict[Modality, int] = {"cxr": 256, "ct": 512}
HU_FLAG = 1.0


class ThresholdBackend:
    """Threshold segmenter for one modality.

    Args:
        modality: ``"cxr"`` or ``"ct"``; picks the algorithm.
        long_side: working resolution: frames whose long side exceeds it are shrunk to it (never
            enlarged); ``None`` = 256 for CXR, 512 for CT. ``to_masks`` upsamples the result.
        confidence: probability given inside the masks (``1 - confidence`` outside), in (0.5, 1].
        ct: CT thresholds (HU bands and shape parameters).
        cxr: CXR parameters.
        cxr_window: HU -> display window used when a CXR backend is given a frame in HU.
        postprocess: parameters for ``to_masks`` (the defaults keep two lungs, fill holes and
            restrict infection to the lung).
    """

    provider = "numpy"

    def __init__(
        self,
        modality: Modality = "cxr",
        long_side: int | None = None,
        confidence: float = 0.95,
        ct: CtThresholds | None = None,
        cxr: CxrThresholds | None = None,
        cxr_window: CtWindow | None = None,
        postprocess: PostprocessParams | None = None,
    ) -> None:
        if modality not in DEFAULT_LONG_SIDE:
            raise ValueError(f"modality must be 'cxr' or 'ct', got {modality!r}")
        if not 0.5 < confidence <= 1.0:
            raise ValueError(f"confidence must be in (0.5, 1], got {confidence}")
        self.modality: Modality = modality
        self.long_side = long_side or DEFAULT_LONG_SIDE[modality]
        self.confidence = confidence
        self.ct = ct or CtThresholds()
        self.cxr = cxr or CxrThresholds()
        self.cxr_window = cxr_window or CtWindow()
        self.info = ModelInfo(f"threshold-{modality}", VERSION, "threshold", modality)
        self.postprocess = postprocess or PostprocessParams()

    def working_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` at working resolution for a frame of ``shape`` (aspect kept)."""
        height, width = shape
        scale = min(1.0, self.long_side / max(height, width, 1))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def prepare(self, frame: np.ndarray, units: Units) -> np.ndarray:
        """One decoded frame -> the segmenter's input.

        Args:
            frame: float ``(H, W)``: HU when ``units == "hu"``, else display values in [0, 1].
            units: ``"hu"`` or ``"display"``.

        Returns:
            float32 ``(2, h, w)`` at working resolution: channel 0 the frame (HU, or display
            values clipped to [0, 1]; non-finite values replaced), channel 1 constant 1.0 for HU
            and 0.0 for display values, so that :meth:`infer` knows the units.
        """
        fill = -1000.0 if units == "hu" else 0.0
        clean = np.nan_to_num(frame.astype(np.float32), nan=fill, posinf=fill, neginf=fill)
        if units == "display":
            clean = np.clip(clean, 0.0, 1.0)
        height, width = self.working_size(clean.shape)
        if (height, width) != clean.shape:
            clean = np.asarray(cv2.resize(clean, (width, height), interpolation=cv2.INTER_AREA))
        flag = np.full_like(clean, HU_FLAG if units == "hu" else 0.0)
        return np.stack([clean, flag]).astype(np.float32)

    def segment(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One prepared ``(2, h, w)`` input -> bool ``(h, w)`` masks ``(lung, infection)``."""
        frame, in_hu = prepared[0], bool(prepared[1].mean() >= HU_FLAG / 2)
        if self.modality == "ct":
            return segment_hu(frame, self.ct) if in_hu else segment_display(frame, self.ct)
        shown = window_hu(frame, self.cxr_window) if in_hu else frame
        return segment(shown, self.cxr)

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Prepared inputs -> float32 ``(2, h, w)`` probabilities (lung, infection) each.

        Values are ``confidence`` inside the masks and ``1 - confidence`` outside.
        """
        low = np.float32(1.0 - self.confidence)
        high = np.float32(self.confidence)
        out = []
        for prepared in inputs:
            lung, infection = self.segment(prepared)
            out.append(np.where(np.stack([lung, infection & lung]), high, low).astype(np.float32))
        log.debug("%s segmented %d frames", self.info.name, len(out))
        return out
