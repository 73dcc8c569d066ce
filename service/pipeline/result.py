"""What the pipeline produces: a backend's raw output per frame, and the result of a request.

Plain data (numpy arrays, dataclasses) for every later stage: the encoders, the benchmark and
the HTTP layer read these and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.imaging.types import Modality, SourceRef
from service.pipeline.decide import FrameDecision
from service.pipeline.measure import InfectionStats
from service.pipeline.postprocess import Masks


@dataclass(frozen=True)
class ModelInfo:
    """Identity of what ran: ``name`` like ``unet-cxr``, ``kind`` the architecture."""

    name: str
    version: str
    kind: str
    modality: Modality


@dataclass(frozen=True)
class Prediction:
    """A backend's output for one frame, at the backend's working resolution ``(h, w)``.

    Exactly one of ``probabilities`` (float32 ``(2, h, w)`` in [0, 1]: lung, infection) and
    ``masks`` (bool ``(2, h, w)``, from a backend that decides pixels itself) is set.
    ``score`` is the image-level probability that infection is present, from a model with a
    decision head (``None`` otherwise).
    """

    probabilities: np.ndarray | None = None
    masks: np.ndarray | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        if (self.probabilities is None) == (self.masks is None):
            raise ValueError("a Prediction holds either probabilities or masks")


@dataclass(frozen=True)
class FrameResult:
    """Masks (bool ``(H, W)``), areas and the model's score of one frame.

    ``probabilities`` (float32 ``(2, H, W)`` at the input's size) is kept only when the caller
    asked for it (the benchmark's loss), and only for backends that give probabilities.
    ``decision`` (lung found, infection detected, why not) is set when the run made image-level
    decisions; the masks and areas are then the decided ones (emptied when there is no lung,
    the infection emptied when none is detected).
    """

    masks: Masks
    stats: InfectionStats
    score: float | None = None
    probabilities: np.ndarray | None = None
    decision: FrameDecision | None = None


@dataclass(frozen=True)
class EncodedMasks:
    """Masks encoded for a JSON answer: per frame ``{"lung": ..., "infection": ...}`` where each
    value is a COCO RLE dict (``format="rle"``) or a base64 PNG string (``format="png"``)."""

    format: str
    frames: list[dict[str, Any]]


@dataclass(frozen=True)
class EncodedFile:
    """A result encoded as a file of its own (a DICOM SEG, a NIfTI, a FHIR Bundle)."""

    format: str
    media_type: str
    content: bytes
    filename: str


Encoded = EncodedMasks | EncodedFile


@dataclass(frozen=True)
class Segmentation:
    """The outcome of one request; ``fallback`` says why another model ran than was asked.

    ``total`` sums the frames' areas; ``timings_ms`` holds each stage's wall time (decode,
    preprocess, infer, postprocess, encode) and ``total``; ``encoded`` is set when the request
    named an output format; ``source`` points back at the input (never logged). The decisions
    of the image: ``lung_found`` and ``infection_detected`` when any frame says so,
    ``infection_score`` the highest of the frames with a lung, ``warnings`` why not, in plain
    words.
    """

    modality: Modality
    model: ModelInfo
    provider: str
    precision: str
    fallback: str | None
    height: int
    width: int
    frames: list[FrameResult]
    total: InfectionStats
    timings_ms: dict[str, float] = field(default_factory=dict)
    source: SourceRef | None = None
    encoded: Encoded | None = None
    lung_found: bool = True
    infection_detected: bool = False
    infection_score: float = 0.0
    warnings: tuple[str, ...] = ()
