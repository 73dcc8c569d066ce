"""The ONE orchestration of a request: frames -> prepare -> infer -> masks -> measures.

The service's ``Segmenter``, the benchmark, the export and the performance tools all call
:func:`run`; none of them re-assembles the path. It is pure: it is given a backend and a
decoded image, reads no file and no setting. ``stage`` lets the caller time and gate each
stage (the ``Segmenter`` holds its CPU and inference limits there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np

from service.imaging.types import DecodedImage, Units
from service.pipeline.decide import decide_frame
from service.pipeline.measure import infection_stats, no_lung
from service.pipeline.params import DecisionParams, PostprocessParams
from service.pipeline.postprocess import Masks, decide, masks_to_masks, upsample
from service.pipeline.result import FrameResult, ModelInfo, Prediction

T = TypeVar("T")
InputT = TypeVar("InputT")
CHUNK_FRAMES = 16
"""Frames prepared, inferred and post-processed together: bounded memory for multi-frame
uploads and series (a 256x256 U-Net needs ~7.5 MiB of activations per frame)."""


class Backend(Protocol[InputT]):
    """A segmenter for one modality (ONNX Runtime models, the threshold segmenter, batchers).

    ``prepare`` turns one decoded frame into the backend's input; ``infer`` turns a batch of
    inputs into one :class:`Prediction` each, in order. ``postprocess`` are the cleanup rules
    of its masks and ``decision`` those of its image-level decisions (from the model card).
    """

    info: ModelInfo
    postprocess: PostprocessParams
    decision: DecisionParams
    provider: str
    precision: str

    def prepare(self, frame: np.ndarray, units: Units) -> InputT:
        """One decoded frame (float ``(H, W)``, HU or display values) -> one input."""
        ...

    def infer(self, inputs: list[InputT]) -> list[Prediction]:
        """Inputs -> predictions, one per input, in order."""
        ...


StageRunner = Callable[[str, Callable[[], Any]], Any]
"""``stage(name, fn)`` runs ``fn`` as stage ``name`` (``preprocess``, ``infer``,
``postprocess``) and returns its result."""


def direct(name: str, fn: Callable[[], T]) -> T:
    """Run the stage as it is (no timing, no gate)."""
    return fn()


def finish(
    prediction: Prediction,
    image: DecodedImage,
    index: int,
    params: PostprocessParams,
    keep_probabilities: bool = False,
    decisions: DecisionParams | None = None,
) -> FrameResult:
    """Frame ``index``'s prediction -> masks and measures at the image's own size (one resize
    back), with the lung-holds-air check where Hounsfield units are known, and, with
    ``decisions``, the image-level decisions applied to them (``service.pipeline.decide``)."""
    size = (image.height, image.width)
    hu = image.frame(index) if image.units == "hu" else None
    full = None
    if prediction.probabilities is not None:
        full = upsample(prediction.probabilities, size)
        masks = decide(full, params.threshold, params, hu)
    elif prediction.masks is not None:
        masks = masks_to_masks(prediction.masks, size, params, hu)
    else:
        raise ValueError("a Prediction holds either probabilities or masks")
    stats = infection_stats(masks.lung, masks.infection, image.spacing_mm)
    kept = full if keep_probabilities else None
    if decisions is None:
        return FrameResult(masks, stats, prediction.score, kept)
    frame = image.frame(index)
    decision = decide_frame(
        masks,
        frame,
        image.units,
        decisions,
        prediction.probabilities,
        params.threshold,
        prediction.score,
        stats.lung_area_mm2,
    )
    if not decision.lung_found:
        empty = np.zeros_like(masks.lung)
        masks, stats = Masks(empty, empty.copy()), no_lung(stats)
    elif not decision.infection_detected and masks.infection.any():
        masks = Masks(masks.lung, np.zeros_like(masks.infection))
        stats = infection_stats(masks.lung, masks.infection, image.spacing_mm)
    return FrameResult(masks, stats, prediction.score, kept, decision)


def run(
    backend: Backend[Any],
    image: DecodedImage,
    *,
    stage: StageRunner = direct,
    frames: Sequence[int] | None = None,
    chunk: int = CHUNK_FRAMES,
    keep_probabilities: bool = False,
    params: PostprocessParams | None = None,
    decisions: bool = True,
) -> list[FrameResult]:
    """Segment the frames of a decoded image (all of them unless ``frames`` says which).

    Args:
        backend: the model (or threshold segmenter) to run.
        image: the decoded upload, float32 ``(frames, H, W)`` in HU or display values.
        stage: runs each stage (see :data:`StageRunner`); :func:`direct` by default.
        frames: frame indices to segment, in order; ``None`` = every frame.
        chunk: frames per prepare/infer/postprocess round (bounded memory).
        keep_probabilities: keep the probabilities at the input's size in each result.
        params: cleanup rules in place of the backend's card (``backend.postprocess``); the
            volume path keeps every lung component per slice and selects them in 3-D.
        decisions: make each frame's image-level decisions with ``backend.decision`` (and
            apply them to its masks); the volume path decides per volume instead.

    Returns:
        One :class:`FrameResult` per frame: masks in the input's size and pixel order.
    """
    indices = list(range(image.n_frames) if frames is None else frames)
    step = max(chunk, 1)
    rules = backend.postprocess if params is None else params
    decided = backend.decision if decisions else None
    results: list[FrameResult] = []
    for start in range(0, len(indices), step):
        part = indices[start : start + step]
        inputs = stage("preprocess", partial(_prepare, backend, image, part))
        predictions = stage("infer", partial(backend.infer, inputs))
        if len(predictions) != len(part):
            raise RuntimeError(
                f"{backend.info.name} gave {len(predictions)} predictions for {len(part)} inputs"
            )
        done = partial(_finish_all, predictions, image, part, rules, keep_probabilities)
        results += stage("postprocess", partial(done, decided))
    return results


def _prepare(backend: Backend[InputT], image: DecodedImage, part: list[int]) -> list[InputT]:
    return [backend.prepare(image.frame(i), image.units) for i in part]


def _finish_all(
    predictions: list[Prediction],
    image: DecodedImage,
    part: list[int],
    params: PostprocessParams,
    keep_probabilities: bool,
    decisions: DecisionParams | None,
) -> list[FrameResult]:
    return [
        finish(p, image, i, params, keep_probabilities, decisions)
        for i, p in zip(part, predictions, strict=True)
    ]
