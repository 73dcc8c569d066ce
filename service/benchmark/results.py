"""A benchmark run's results, as stored and answered by ``/v1/benchmark``, and a run in one process.

:func:`score_models` scores every requested model kind on every modality of a labelled set (the
results of an uploaded set's run); a server-side set's run computes the same results from its
chunks (:mod:`service.benchmark.chunks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from service.benchmark.evaluate import ImageScore, Summary, evaluate, summarise
from service.datasets import LabelledSet
from service.imaging.types import DecodedImage
from service.models.base import Backend
from service.models.segmenter import Segmenter
from service.pipeline.result import FrameResult


@dataclass(frozen=True)
class EntryModel:
    """What ran for an entry: the model's identity, execution provider and precision."""

    name: str
    version: str
    kind: str
    modality: str
    provider: str
    precision: str

    @classmethod
    def of(cls, backend: Backend[Any]) -> EntryModel:
        """The identity, provider and precision of the backend that ran."""
        info = backend.info
        return cls(
            info.name, info.version, info.kind, info.modality, backend.provider, backend.precision
        )


def gated_runner(segmenter: Segmenter) -> Callable[[Backend[Any], DecodedImage], list[FrameResult]]:
    """The benchmark's runner: the first frame through the segmenter's gates, probabilities
    kept (for the loss)."""

    def gated(backend: Backend[Any], image: DecodedImage) -> list[FrameResult]:
        return segmenter.run(backend, image, keep_probabilities=True, frames=[0])

    return gated


@dataclass(frozen=True)
class Timing:
    """Wall time of the evaluation (decode, inference, scoring) in milliseconds."""

    ms_per_image: float
    total_ms: float
    n_images: int


@dataclass(frozen=True)
class BenchmarkEntry:
    """One (model, modality) of a run; ``fallback`` says why another model ran than asked."""

    requested: str
    modality: str
    model: EntryModel
    fallback: str | None
    summary: Summary
    rows: list[ImageScore]
    timing: Timing


@dataclass(frozen=True)
class BenchmarkResults:
    """The results of a run, as stored (``asdict``) and answered by ``/v1/benchmark``."""

    set: str
    layout: str
    entries: list[BenchmarkEntry]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_models(
    segmenter: Segmenter, labelled: LabelledSet, models: list[str]
) -> BenchmarkResults:
    """Evaluate each requested model kind on every modality of the set, through the
    segmenter's limits (its inference and CPU gates), one entry per (model, modality)."""
    gated = gated_runner(segmenter)
    entries = []
    for modality in sorted({s.modality for s in labelled.samples}):
        samples = [s for s in labelled.samples if s.modality == modality]
        for kind in models:
            backend, fallback = segmenter.backend_for(kind, modality)
            start = time.perf_counter()
            rows = evaluate(backend, samples, runner=gated)
            elapsed_ms = (time.perf_counter() - start) * 1000
            model = EntryModel.of(backend)
            timing = Timing(elapsed_ms / max(len(samples), 1), elapsed_ms, len(samples))
            entries.append(
                BenchmarkEntry(kind, modality, model, fallback, summarise(rows), rows, timing)
            )
    return BenchmarkResults(labelled.name, labelled.layout, entries)
