"""``Segmenter``: the one entry class of the core (lungmask style).

Built once from a :class:`SegmenterConfig` (models loaded and execution providers chosen in
``__init__``), then :meth:`Segmenter.segment_bytes` runs the whole request path: decode ->
``service.pipeline.run`` (prepare -> infer -> masks -> measures) -> encode, timing each stage
and holding the worker's limits on inferences and CPU stages.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from service.cpus import usable_cores
from service.errors import InvalidParameterError, ModelLoadError
from service.imaging import decode
from service.imaging.nifti import decode_nifti, is_nifti
from service.imaging.series import assemble_series
from service.imaging.types import DecodedImage, Modality
from service.imaging.volume import Volume
from service.models.base import THRESHOLD, Backend
from service.models.batching import MicroBatcher
from service.models.gates import SharedThreads, StageClock, gate
from service.models.onnx_backend import CUDA, choose_providers
from service.models.registry import ModelRegistry
from service.models.threshold import ThresholdBackend
from service.pipeline.decide import image_decision
from service.pipeline.measure import total_stats
from service.pipeline.result import Encoded, FrameResult, Segmentation
from service.pipeline.run import CHUNK_FRAMES, StageRunner, run
from service.pipeline.volume import VolumeSegmentation, segment_slices
from service.pipeline.volume_measure import finish_volume

log = logging.getLogger(__name__)

ModalityChoice = Literal["auto", "cxr", "ct"]
Encoder = Callable[[Segmentation], Encoded]
T = TypeVar("T")
GPU_BATCH_WINDOW_MS = 2.0


@dataclass(frozen=True)
class SegmenterConfig:
    """How a ``Segmenter`` is built (``service.api.settings.Settings`` converts to this).

    Attributes:
        models_dir: folder of ``<name>/<version>/{model.onnx,model.json}``; ``None`` serves the
            threshold segmenter only.
        providers: ``auto`` (CUDA when available, else CPU), ``cuda`` or ``cpu``.
        precision: ONNX variant to serve: ``auto`` (accepted int8 on CPU / fp16 on CUDA, else
            fp32), ``fp32``, ``int8`` or ``fp16``.
        intra_op_threads: ONNX Runtime threads per inference (0 = its default).
        max_pixels: largest accepted image (all frames), checked before decompression.
        max_volume_pixels: largest accepted volume (voxels, a series' planes or a NIfTI's
            array) for :meth:`Segmenter.load_volume`; None = ``max_pixels``.
        batch_window_ms: when > 0, concurrent requests to one ONNX model arriving within this
            window run as one batch (micro-batching); ``None``: ``GPU_BATCH_WINDOW_MS`` for the
            models on CUDA, off on the CPU (where one image at a time is as fast). Models on
            CUDA always run in their batcher's thread (window 0: no waiting).
        max_batch: most images in one micro-batch (and in one GPU run).
        max_inferences: inferences that may run at once (0 = no limit); with
            ``intra_op_threads`` it keeps ONNX Runtime threads within the cores. Micro-batched
            models are not gated (their batcher runs one batch at a time).
        cpu_stages: decode/pre/postprocessing steps that may run at once (0 = no limit), so
            that they neither oversubscribe the cores nor hold many decoded images in memory.
            It is also the number of threads that decompress a JPEG 2000 DICOM frame, shared
            among the uploads being decoded at that moment (one alone gets them all).
        cuda_options: CUDA execution provider options (``None``: ``DEFAULT_CUDA_OPTIONS``).
        chunk_frames: frames of a multi-frame upload processed together (bounded memory).
        default_kind: the model kind asked for when a request names none; when it is not
            installed requests fall back to the threshold segmenter (they are not refused).
    """

    models_dir: Path | None
    providers: str = "auto"
    precision: str = "auto"
    intra_op_threads: int = 0
    max_pixels: int = 80_000_000
    max_volume_pixels: int | None = None
    batch_window_ms: float | None = None
    max_batch: int = 32
    max_inferences: int = 0
    cpu_stages: int = 0
    cuda_options: dict[str, str] | None = None
    chunk_frames: int = CHUNK_FRAMES
    default_kind: str = "unet"


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
            f"({image.modality}); send modality=auto or omit it",
            "modality",
        )
    return asked


class Segmenter:
    """Loads the models once and segments uploads (see :class:`SegmenterConfig`)."""

    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config
        self.max_pixels = config.max_pixels
        self.max_volume_pixels = config.max_volume_pixels or config.max_pixels
        self._infer_gate = gate(config.max_inferences)
        self._cpu_gate = gate(config.cpu_stages)
        self._decode_threads = SharedThreads(config.cpu_stages or usable_cores())
        self.registry = (
            ModelRegistry.load(
                config.models_dir,
                choose_providers(config.providers),
                config.intra_op_threads,
                config.precision,
                cuda_options=config.cuda_options,
                max_batch=config.max_batch,
            )
            if config.models_dir is not None
            else ModelRegistry()
        )
        self.batched: dict[str, MicroBatcher] = {}
        for name, backend in list(self.registry.models.items()):
            window = config.batch_window_ms
            if window is None:
                window = GPU_BATCH_WINDOW_MS if backend.provider == CUDA else 0.0
            if window > 0 or backend.provider == CUDA:
                try:
                    self.batched[name] = MicroBatcher(backend, window, config.max_batch)
                except ModelLoadError as err:  # e.g. out of GPU memory: falls back, reported
                    self.registry.mark_unavailable(name, str(err))
        self.thresholds: dict[Modality, ThresholdBackend] = {
            "cxr": ThresholdBackend("cxr"),
            "ct": ThresholdBackend("ct"),
        }

    def model_kinds(self) -> list[str]:
        """The values the ``model`` parameter accepts: the default kind, the other installed
        kinds (loaded or not), and ``threshold``."""
        default = self.config.default_kind
        return [default, *(k for k in self.registry.kinds() if k != default), THRESHOLD]

    def check_kind(self, kind: str) -> None:
        """Raise InvalidParameterError (422) unless ``kind`` is one of :meth:`model_kinds`."""
        if kind not in self.model_kinds():
            raise InvalidParameterError(
                f"model={kind!r} is not installed; choose one of {', '.join(self.model_kinds())}",
                "model",
            )

    def backend_for(self, kind: str, modality: Modality) -> tuple[Backend[Any], str | None]:
        """The backend to run and, when it is not what was asked, why (the fallback reason).

        Raises:
            InvalidParameterError: ``kind`` is not an installed model kind nor ``threshold``.
        """
        if kind == THRESHOLD:
            return self.thresholds[modality], None
        self.check_kind(kind)
        name = self.registry.name_for(kind, modality)
        if name is None:
            return self.thresholds[
                modality
            ], f"model {kind} for {modality} is not installed; ran threshold"
        found = self.registry.models.get(name)
        if found is not None:
            return self.batched.get(name, found), None
        reason = self.registry.unavailable.get(name, "it is not loaded")
        return self.thresholds[modality], f"model {name} is unavailable ({reason}); ran threshold"

    def decode(self, data: bytes) -> DecodedImage:
        """Decode an upload within the CPU-stage limit (``max_pixels`` applies), JPEG 2000
        frames with the decoding threads this upload's share of the cores allows."""
        with self._cpu_gate:
            return self._decode(data)

    def _decode(self, data: bytes) -> DecodedImage:
        with self._decode_threads as threads:
            return decode(data, max_pixels=self.max_pixels, threads=threads)

    def segment_bytes(
        self,
        data: bytes,
        modality: ModalityChoice = "auto",
        model: str | None = None,
        encoder: Encoder | None = None,
    ) -> Segmentation:
        """Decode and segment an upload (DICOM, PNG or JPEG bytes); every frame is segmented;
        with ``encoder``, the result carries its encoding (timed as ``encode``)."""
        clock = StageClock()
        image = clock.run("decode", lambda: self._decode(data), self._cpu_gate)
        return self.segment_image(image, modality, model, encoder, clock)

    def segment_image(
        self,
        image: DecodedImage,
        modality: ModalityChoice = "auto",
        model: str | None = None,
        encoder: Encoder | None = None,
        clock: StageClock | None = None,
    ) -> Segmentation:
        """Segment an already decoded image (all frames); ``model`` None = the default kind."""
        clock = clock or StageClock()
        resolved = resolve_modality(image, modality)
        backend, fallback = self.backend_for(model or self.config.default_kind, resolved)
        frames = self.run(backend, image, clock)
        decided = image_decision([f.decision for f in frames])
        result = Segmentation(
            modality=resolved,
            model=backend.info,
            provider=backend.provider,
            precision=backend.precision,
            fallback=fallback,
            height=image.height,
            width=image.width,
            frames=frames,
            total=total_stats([f.stats for f in frames]),
            source=image.source,
            lung_found=decided.lung_found,
            infection_detected=decided.infection_detected,
            infection_score=decided.infection_score,
            warnings=decided.warnings,
        )
        if encoder is not None:
            encoded = clock.run("encode", lambda: encoder(result), self._cpu_gate)
            result = dataclasses.replace(result, encoded=encoded)
        return dataclasses.replace(result, timings_ms=clock.total())

    def run(
        self,
        backend: Backend[Any],
        image: DecodedImage,
        clock: StageClock | None = None,
        keep_probabilities: bool = False,
        frames: list[int] | None = None,
    ) -> list[FrameResult]:
        """``service.pipeline.run`` within this worker's limits: CPU stages and inferences
        gated (a micro-batched model's batcher runs one batch at a time: not gated)."""
        clock = clock or StageClock()
        infer_gate = nullcontext() if isinstance(backend, MicroBatcher) else self._infer_gate

        def stage(name: str, fn: Callable[[], T]) -> T:
            within: AbstractContextManager[object] = (
                infer_gate if name == "infer" else self._cpu_gate
            )
            return clock.run(name, fn, within)

        return run(
            backend,
            image,
            stage=stage,
            frames=frames,
            chunk=self.config.chunk_frames,
            keep_probabilities=keep_probabilities,
        )

    def load_volume(
        self, files: Sequence[bytes], series_uid: str | None = None, clock: StageClock | None = None
    ) -> Volume:
        """One NIfTI file, or the files of a DICOM series (any order) -> Volume, within the
        CPU-stage limit and ``max_volume_pixels``; timed as ``assemble``."""
        limit = self.max_volume_pixels

        def load() -> Volume:
            if len(files) == 1 and is_nifti(files[0]):
                return decode_nifti(files[0], max_pixels=limit)
            with self._decode_threads as n:
                return assemble_series(files, max_pixels=limit, threads=n, series_uid=series_uid)

        return (clock or StageClock()).run("assemble", load, self._cpu_gate)

    def segment_volume(
        self,
        volume: Volume,
        model: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        *,
        clock: StageClock | None = None,
    ) -> VolumeSegmentation:
        """Segment a CT volume: ``service.pipeline.run`` over its canonical axial slices, in
        chunks within this worker's limits (``progress(done, total)`` after each), then the
        3-D step and measures (``service.pipeline.volume``); ``model`` as for segment_image."""
        clock = clock or StageClock()
        backend, fallback = self.backend_for(model or self.config.default_kind, volume.modality)
        stage, chunk = self._stages(backend, clock), self.config.chunk_frames
        labels, scores = segment_slices(
            backend, volume, stage=stage, chunk=chunk, progress=progress
        )
        finish = partial(finish_volume, volume, labels, scores, backend, fallback)
        result = clock.run("volume_postprocess", finish, self._cpu_gate)
        return dataclasses.replace(result, timings_ms=clock.total())

    def _stages(self, backend: Backend[Any], clock: StageClock) -> StageRunner:
        """The stage runner of :meth:`run`: inferences and CPU stages gated, each timed."""
        infer_gate = nullcontext() if isinstance(backend, MicroBatcher) else self._infer_gate

        def stage(name: str, fn: Callable[[], T]) -> T:
            within = infer_gate if name == "infer" else self._cpu_gate
            return clock.run(name, fn, within)

        return stage

    def close(self) -> None:
        """Stop the micro-batching threads."""
        for batcher in self.batched.values():
            batcher.close()
