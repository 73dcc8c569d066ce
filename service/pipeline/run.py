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
from service.pipeline.measure import infection_stats
from service.pipeline.params import PostprocessParams
from service.pipeline.postprocess import decide, masks_to_masks, upsample
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
    of its masks (from the model card).
    """

    info: ModelInfo
    postprocess: PostprocessParams
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
) -> FrameResult:
    """Frame ``index``'s prediction -> masks and measures at the image's own size (one resize
    back), with the lung-holds-air check where Hounsfield units are known."""
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
    return FrameResult(masks, stats, prediction.score, full if keep_probabilities else None)


def run(
    backend: Backend[Any],
    image: DecodedImage,
    *,
    stage: StageRunner = direct,
    frames: Sequence[int] | None = None,
    chunk: int = CHUNK_FRAMES,
    keep_probabilities: bool = False,
    params: PostprocessParams | None = None,
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

    Returns:
        One :class:`FrameResult` per frame: masks in the input's size and pixel order.
    """
    indices = list(range(image.n_frames) if frames is None else frames)
    step = max(chunk, 1)
    rules = backend.postprocess if params is None else params
    results: list[FrameResult] = []
    for start in range(0, len(indices), step):
        part = indices[start : start + step]
        inputs = stage("preprocess", partial(_prepare, backend, image, part))
        predictions = stage("infer", partial(backend.infer, inputs))
        if len(predictions) != len(part):
            raise RuntimeError(
                f"{backend.info.name} gave {len(predictions)} predictions for {len(part)} inputs"
            )
        done = partial(_finish_all, predictions, image, part, rules)
        results += stage("postprocess", partial(done, keep_probabilities))
    return results


def _prepare(backend: Backend[InputT], image: DecodedImage, part: list[int]) -> list[InputT]:
    return [backend.prepare(image.frame(i), image.units) for i in part]


def _finish_all(
    predictions: list[Prediction],
    image: DecodedImage,
    part: list[int],
    params: PostprocessParams,
    keep_probabilities: bool,
) -> list[FrameResult]:
    return [
        finish(p, image, i, params, keep_probabilities)
        for i, p in zip(part, predictions, strict=True)
    ]
