"""A server-side set's benchmark run in chunks: their bounds, scoring one, merging them all.

A run of ``n_images`` goes in chunks of ``size`` images (:func:`chunk_bounds`). Each chunk's
job scores its images for every (modality, model kind) of the run (:func:`score_chunk`: the
rows as JSON, as the store keeps a chunk's result); the chunk that ends last merges every
chunk's rows into the run's results (:func:`merge_chunks`: the summaries computed from all rows
by :func:`service.benchmark.evaluate.summarise`, as one process computes them with
:func:`service.benchmark.results.score_models`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from typing import Any

from service.benchmark.evaluate import ImageScore, evaluate, summarise
from service.benchmark.results import (
    BenchmarkEntry,
    BenchmarkResults,
    EntryModel,
    Timing,
    gated_runner,
)
from service.datasets import LabelledSet
from service.errors import InvalidInputError, LungsegError
from service.jobs import JobStopped
from service.models.segmenter import Segmenter


def chunk_bounds(n_images: int, size: int) -> list[tuple[int, int]]:
    """The images ``[start, stop)`` of each chunk of ``size`` (one chunk for an empty set)."""
    if size < 1:
        raise ValueError("a chunk holds at least one image")
    return [(start, min(start + size, n_images)) for start in range(0, n_images, size)] or [(0, 0)]


def score_chunk(
    segmenter: Segmenter,
    labelled: LabelledSet,
    models: list[str],
    start: int,
    stop: int,
    stopped: threading.Event | None = None,
) -> dict[str, Any]:
    """The rows of images ``[start, stop)`` of the set for every (modality of the whole set,
    model kind), in :func:`score_models`'s order, with the model that ran and the time it took
    (JSON, as a chunk's result is stored). ``stopped`` set: JobStopped at the next image."""
    gated = gated_runner(segmenter)

    def check(_done: int) -> None:
        if stopped is not None and stopped.is_set():
            raise JobStopped()

    chunk = labelled.samples[start:stop]
    entries = []
    for modality in sorted({s.modality for s in labelled.samples}):
        samples = [s for s in chunk if s.modality == modality]
        for kind in models:
            backend, fallback = segmenter.backend_for(kind, modality)
            began = time.perf_counter()
            rows = evaluate(backend, samples, progress=check, runner=gated)
            model = EntryModel.of(backend)
            entries.append(
                {
                    "requested": kind,
                    "modality": modality,
                    "model": asdict(model),
                    "fallback": fallback,
                    "rows": [row.to_dict() for row in rows],
                    "ms": (time.perf_counter() - began) * 1000,
                }
            )
    return {"set": labelled.name, "layout": labelled.layout, "entries": entries}


def merge_chunks(parts: list[dict[str, Any]]) -> BenchmarkResults:
    """The run's results from its chunks' (index order): each entry's rows are the chunks'
    rows in order, its summary ``summarise`` of them all, its time the chunks' summed.

    Raises:
        InvalidInputError: the chunks were scored by different models (replicas serving
            different model versions) or disagree on the entries.
    """
    head = parts[0]
    keys = [(e["requested"], e["modality"], e["model"], e["fallback"]) for e in head["entries"]]
    for part in parts[1:]:
        other = [
            (e["requested"], e["modality"], e["model"], e["fallback"]) for e in part["entries"]
        ]
        if other != keys:
            raise InvalidInputError(
                "the run's chunks were scored by different models: every replica must serve "
                "the same models"
            )
    entries = []
    for i, (requested, modality, model, fallback) in enumerate(keys):
        rows = [ImageScore.from_dict(row) for part in parts for row in part["entries"][i]["rows"]]
        total_ms = sum(float(part["entries"][i]["ms"]) for part in parts)
        timing = Timing(total_ms / max(len(rows), 1), total_ms, len(rows))
        entries.append(
            BenchmarkEntry(
                requested, modality, EntryModel(**model), fallback, summarise(rows), rows, timing
            )
        )
    return BenchmarkResults(head["set"], head["layout"], entries)


def merge_outcome(parts: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None, str | None]:
    """The run's outcome from its chunks (the store's merge): ``("done", results, None)``,
    or ``("failed", None, the reason)`` when :func:`merge_chunks` refuses them."""
    try:
        return "done", merge_chunks(parts).to_dict(), None
    except LungsegError as err:
        return "failed", None, str(err)
