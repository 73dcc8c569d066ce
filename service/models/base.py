"""What every segmentation backend offers (ONNX Runtime models and the threshold segmenter).

A backend splits its work in two so that callers can time the stages and batch inference:
``prepare`` turns one decoded frame into the backend's input, ``infer`` turns a batch of inputs
into per-frame probabilities. ``service.pipeline.postprocess.to_masks`` with the backend's
``postprocess`` parameters then makes the final masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from service.imaging.types import Modality, Units
from service.pipeline.params import PostprocessParams

Kind = Literal["unet", "cnn", "threshold"]
LABELS = ("lung", "infection")


@dataclass(frozen=True)
class ModelInfo:
    """Identity of what ran: ``name`` like ``unet-cxr``, ``kind`` the architecture."""

    name: str
    version: str
    kind: Kind
    modality: Modality


class Backend(Protocol):
    """A segmenter for one modality."""

    info: ModelInfo
    postprocess: PostprocessParams
    provider: str

    def prepare(self, frame: np.ndarray, units: Units) -> np.ndarray:
        """One decoded frame (float ``(H, W)``, HU or display) -> one model input."""
        ...

    def infer(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Model inputs -> probabilities, float32 ``(2, h, w)`` in [0, 1] each (lung, infection)."""
        ...
