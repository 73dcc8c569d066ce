"""``Segmenter``: the one entry class of the core (lungmask style).

Built once (models loaded and execution providers chosen in ``__init__``), then
``segment_bytes`` runs the whole request path: decode -> preprocess -> infer -> postprocess ->
measure, timing each stage. Encoding (RLE/PNG) is left to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from service.cpus import usable_cores
from service.errors import InvalidParameterError, ModelLoadError
from service.imaging import decode
from service.imaging.types import DecodedImage, Modality
from service.models.base import Backend, ModelInfo
from service.models.batching import MicroBatcher
from service.models.onnx_backend import CUDA, choose_providers
from service.models.registry import ModelRegistry
from service.models.threshold import ThresholdBackend
from service.pipeline.measure import InfectionStats, infection_stats, total_stats
from service.pipeline.postprocess import Masks, to_masks

log = logging.getLogger(__name__)

ModalityChoice = Literal["auto", "cxr", "ct"]
ModelChoice = Literal["unet", "cnn", "threshold"]
T = TypeVar("T")
GPU_BATCH_WINDOW_MS = 2.0


@dataclass(frozen=True)
class FrameResult:
    """Masks (bool ``(H, W)``) and areas of one frame."""

    masks: Masks
    stats: InfectionStats


@dataclass(frozen=True)
class Segmentation:
    """The outcome of one request; ``fallback`` says why another model ran than was asked."""

    modality: Modality
    model: ModelInfo
    provider: str
    fallback: str | None
    height: int
    width: int
    frames: list[FrameResult]
    total: InfectionStats
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Accumulates wall time per stage in milliseconds (waiting for a gate not counted)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._start = time.perf_counter()

    def run(self, stage: str, fn: Callable[[], T], gate: AbstractContextManager[object]) -> T:
        with gate:
            begin = time.perf_counter()
            result = fn()
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - begin) * 1000
        return result

    def total(self) -> dict[str, float]:
        return {**self.ms, "total": (time.perf_counter() - self._start) * 1000}


def _gate(limit: int) -> AbstractContextManager[object]:
    """A semaphore admitting ``limit`` threads at once, or no gate for 0."""
    return threading.BoundedSemaphore(limit) if limit > 0 else nullcontext()


class _SharedThreads:
    """``with shared as n``: a share of ``total`` threads, split among the holders at entry."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._holders = 0
        self._lock = threading.Lock()

    def __enter__(self) -> int:
        with self._lock:
            self._holders += 1
            return max(1, self.total // self._holders)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1


def resolve_modality(image: DecodedImage, asked: ModalityChoice) -> Modality:
    """The modality to segment as: the DICOM tag for ``auto`` (PNG/JPEG: CXR), else as asked.

    An explicit choice that contradicts a DICOM Modality tag is refused: CT in Hounsfield units
    cannot be segmented as a radiograph, nor the reverse.
    """
    if asked == "auto":
        return image.modality or "cxr"
    if image.modality is not None and image.modality != asked:
        raise InvalidParameterError(
            f"modality={asked} contradicts the DICOM Modality of this file "
            f"({image.modality}); send modality=auto or omit it"
        )
    return asked


class Segmenter:
    """Loads the models once and segments decoded uploads.

    Args:
        models_dir: folder of ``<name>/<version>/{model.onnx,model.json}``; ``None`` serves the
            threshold segmenter only.
        providers: ``auto`` (CUDA when available, else CPU), ``cuda`` or ``cpu``.
        intra_op_threads: ONNX Runtime threads per inference (0 = its default).
        max_pixels: largest accepted image (all frames), checked before decompression.
        batch_window_ms: when > 0, concurrent requests to one ONNX model arriving within this
            window run as one batch (micro-batching); ``None``: ``GPU_BATCH_WINDOW_MS`` for the
            models on CUDA, off on the CPU (where one image at a time is as fast). Models on
            CUDA always run in their batcher's thread (window 0: no waiting).
        max_batch: most images in one micro-batch (and in one GPU run).
        max_inferences: inferences that may run at once (0 = no limit); with
            ``intra_op_threads`` it keeps ONNX Runtime threads within the cores. Micro-batched
            models are not gated (their batcher runs one batch at a time).
        cuda_options: CUDA execution provider options (``None``: ``DEFAULT_CUDA_OPTIONS``).
        cpu_stages: decode/pre/postprocessing steps that may run at once (0 = no limit), so
            that they neither oversubscribe the cores nor hold many decoded images in memory.
            It is also the number of threads that decompress a JPEG 2000 DICOM frame, shared
            among the uploads being decoded at that moment (one alone gets them all).
        precision: ONNX variant to serve: ``auto`` (accepted int8 on CPU / fp16 on CUDA, else
            fp32), ``fp32``, ``int8`` or ``fp16``.
    """

    def __init__(
        self,
        models_dir: Path | None,
        providers: str = "auto",
        intra_op_threads: int = 0,
        max_pixels: int = 80_000_000,
        batch_window_ms: float | None = None,
        max_batch: int = 32,
        precision: str = "auto",
        max_inferences: int = 0,
        cpu_stages: int = 0,
        cuda_options: dict[str, str] | None = None,
    ) -> None:
        self.max_pixels = max_pixels
        self._infer_gate = _gate(max_inferences)
        self._cpu_gate = _gate(cpu_stages)
        self._decode_threads = _SharedThreads(cpu_stages or usable_cores())
        self.registry = (
            ModelRegistry.load(
                models_dir,
                choose_providers(providers),
                intra_op_threads,
                precision,
                cuda_options=cuda_options,
                max_batch=max_batch,
            )
            if models_dir is not None
            else ModelRegistry()
        )
        self.batched: dict[str, MicroBatcher] = {}
        for name, backend in list(self.registry.models.items()):
            window = batch_window_ms
            if window is None:
                window = GPU_BATCH_WINDOW_MS if backend.provider == CUDA else 0.0
            if window > 0 or backend.provider == CUDA:
                try:
                    self.batched[name] = MicroBatcher(backend, window, max_batch)
                except ModelLoadError as err:  # e.g. out of GPU memory: falls back, reported
                    del self.registry.models[name]
                    self.registry.unavailable[name] = str(err)
                    log.error("model %s unavailable: %s", name, err)
        self.thresholds: dict[Modality, ThresholdBackend] = {
            "cxr": ThresholdBackend("cxr"),
            "ct": ThresholdBackend("ct"),
        }

    def backend_for(self, kind: ModelChoice, modality: Modality) -> tuple[Backend, str | None]:
        """The backend to run and, when it is not what was asked, why (the fallback reason)."""
        if kind == "threshold":
            return self.thresholds[modality], None
        name = f"{kind}-{modality}"
        found = self.registry.find(kind, modality)
        if found is not None:
            return self.batched.get(found.info.name, found), None
        reason = self.registry.unavailable.get(name, "it is not installed")
        return self.thresholds[modality], f"model {name} is unavailable ({reason}); ran threshold"

    def segment_bytes(
        self, data: bytes, modality: ModalityChoice = "auto", model: ModelChoice = "unet"
    ) -> Segmentation:
        """Decode and segment an upload (DICOM, PNG or JPEG bytes); every frame is segmented."""
        clock = _Clock()
        image = clock.run("decode", lambda: self._decode(data), self._cpu_gate)
        return self.segment_image(image, modality, model, clock)

    def decode(self, data: bytes) -> DecodedImage:
        """Decode an upload within the CPU-stage limit (``max_pixels`` applies), JPEG 2000
        frames with the decoding threads this upload's share of the cores allows."""
        with self._cpu_gate:
            return self._decode(data)

    def _decode(self, data: bytes) -> DecodedImage:
        with self._decode_threads as threads:
            return decode(data, max_pixels=self.max_pixels, threads=threads)

    def segment_image(
        self,
        image: DecodedImage,
        modality: ModalityChoice = "auto",
        model: ModelChoice = "unet",
        clock: _Clock | None = None,
    ) -> Segmentation:
        """Segment an already decoded image (all frames, one batch)."""
        clock = clock or _Clock()
        resolved = resolve_modality(image, modality)
        backend, fallback = self.backend_for(model, resolved)
        inputs = clock.run(
            "preprocess",
            lambda: [backend.prepare(image.frame(i), image.units) for i in range(image.n_frames)],
            self._cpu_gate,
        )
        gate = nullcontext() if isinstance(backend, MicroBatcher) else self._infer_gate
        probs = clock.run("infer", lambda: backend.infer(inputs), gate)
        frames = clock.run(
            "postprocess",
            lambda: [self._frame(p, i, backend, image) for i, p in enumerate(probs)],
            self._cpu_gate,
        )
        return Segmentation(
            modality=resolved,
            model=backend.info,
            provider=backend.provider,
            fallback=fallback,
            height=image.height,
            width=image.width,
            frames=frames,
            total=total_stats([f.stats for f in frames]),
            timings_ms=clock.total(),
        )

    def close(self) -> None:
        """Stop the micro-batching threads."""
        for batcher in self.batched.values():
            batcher.close()

    @staticmethod
    def _frame(probs: np.ndarray, index: int, backend: Backend, image: DecodedImage) -> FrameResult:
        size = (image.height, image.width)
        hu = image.frame(index) if image.units == "hu" else None
        masks = to_masks(probs, size, backend.postprocess, hu)
        return FrameResult(masks, infection_stats(masks.lung, masks.infection, image.spacing_mm))
