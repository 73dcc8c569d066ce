"""The classical, model-free threshold segmenter: the seed project's "Thresholding" model.

It is the service's fallback when no trained model is available, and the baseline every model
is compared with (``docs/baseline.md``). It implements the pipeline's ``Backend`` protocol and
returns masks, not probabilities (it has none: a loss is not defined for it); the algorithms
live in :mod:`service.models.threshold.ct` (CT, in Hounsfield units or windowed display values)
and :mod:`service.models.threshold.cxr` (chest X-ray).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from service.imaging.types import Modality, Units
from service.models.base import THRESHOLD, ModelInfo, Prediction
from service.models.threshold.ct import CtThresholds, segment_display, segment_hu
from service.models.threshold.cxr import CxrThresholds, segment
from service.pipeline.params import CtWindow, DecisionParams, PostprocessParams
from service.pipeline.preprocess import window_hu

log = logging.getLogger(__name__)

VERSION = "1.0.0"
DEFAULT_LONG_SIDE: dict[Modality, int] = {"cxr": 256, "ct": 512}


@dataclass(frozen=True)
class ThresholdInput:
    """One frame at working resolution: float32 ``(h, w)``, HU when ``in_hu`` else display
    values in [0, 1] (non-finite values replaced)."""

    frame: np.ndarray
    in_hu: bool


class ThresholdBackend:
    """Threshold segmenter for one modality.

    Args:
        modality: ``"cxr"`` or ``"ct"``; picks the algorithm.
        long_side: working resolution: frames whose long side exceeds it are shrunk to it (never
            enlarged); ``None`` = 256 for CXR, 512 for CT. The pipeline upsamples the masks.
        ct: CT thresholds (HU bands and shape parameters).
        cxr: CXR parameters.
        cxr_window: HU -> display window used when a CXR backend is given a frame in HU.
        postprocess: the pipeline's cleanup rules (the defaults keep two lungs, fill holes and
            restrict infection to the lung).
    """

    provider = "numpy"
    precision = "fp32"

    def __init__(
        self,
        modality: Modality = "cxr",
        long_side: int | None = None,
        ct: CtThresholds | None = None,
        cxr: CxrThresholds | None = None,
        cxr_window: CtWindow | None = None,
        postprocess: PostprocessParams | None = None,
    ) -> None:
        if modality not in DEFAULT_LONG_SIDE:
            raise ValueError(f"modality must be 'cxr' or 'ct', got {modality!r}")
        self.modality: Modality = modality
        self.long_side = long_side or DEFAULT_LONG_SIDE[modality]
        self.ct = ct or CtThresholds()
        self.cxr = cxr or CxrThresholds()
        self.cxr_window = cxr_window or CtWindow()
        self.info = ModelInfo(f"{THRESHOLD}-{modality}", VERSION, THRESHOLD, modality)
        self.postprocess = postprocess or PostprocessParams()
        self.decision = DecisionParams.a_priori(modality)

    def working_size(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` at working resolution for a frame of ``shape`` (aspect kept)."""
        height, width = shape
        scale = min(1.0, self.long_side / max(height, width, 1))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def prepare(self, frame: np.ndarray, units: Units) -> ThresholdInput:
        """One decoded frame (float ``(H, W)``: HU or display values) at working resolution."""
        fill = -1000.0 if units == "hu" else 0.0
        clean = np.nan_to_num(frame.astype(np.float32), nan=fill, posinf=fill, neginf=fill)
        if units == "display":
            clean = np.clip(clean, 0.0, 1.0)
        height, width = self.working_size(clean.shape)
        if (height, width) != clean.shape:
            clean = np.asarray(cv2.resize(clean, (width, height), interpolation=cv2.INTER_AREA))
        return ThresholdInput(clean.astype(np.float32, copy=False), units == "hu")

    def segment(self, prepared: ThresholdInput) -> tuple[np.ndarray, np.ndarray]:
        """One prepared input -> bool ``(h, w)`` masks ``(lung, infection)``."""
        frame = prepared.frame
        if self.modality == "ct":
            return segment_hu(frame, self.ct) if prepared.in_hu else segment_display(frame, self.ct)
        shown = window_hu(frame, self.cxr_window) if prepared.in_hu else frame
        return segment(shown, self.cxr)

    def infer(self, inputs: list[ThresholdInput]) -> list[Prediction]:
        """Prepared inputs -> one Prediction each: bool ``(2, h, w)`` masks (lung, infection
        inside the lung)."""
        out = []
        for prepared in inputs:
            lung, infection = self.segment(prepared)
            out.append(Prediction(masks=np.stack([lung, infection & lung])))
        log.debug("%s segmented %d frames", self.info.name, len(out))
        return out
