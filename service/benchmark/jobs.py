"""Benchmark jobs: score models on a labelled set in the background (a ``service.jobs`` kind),
persist the results."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from service.benchmark.evaluate import ImageScore, Summary, evaluate, summarise
from service.benchmark.store import HEARTBEAT_S, Heartbeat, RunStore
from service.datasets import LabelledSet
from service.errors import BusyError
from service.imaging.types import DecodedImage
from service.jobs import Job, LocalExecutor, Reservation, record_outcome
from service.models.base import Backend
from service.models.segmenter import Segmenter
from service.pipeline.result import FrameResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EntryModel:
    """What ran for an entry: the model's identity, execution provider and precision."""

    name: str
    version: str
    kind: str
    modality: str
    provider: str
    precision: str


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

    def gated(backend: Backend[Any], image: DecodedImage) -> list[FrameResult]:
        return segmenter.run(backend, image, keep_probabilities=True, frames=[0])

    entries = []
    for modality in sorted({s.modality for s in labelled.samples}):
        samples = [s for s in labelled.samples if s.modality == modality]
        for kind in models:
            backend, fallback = segmenter.backend_for(kind, modality)
            start = time.perf_counter()
            rows = evaluate(backend, samples, runner=gated)
            elapsed_ms = (time.perf_counter() - start) * 1000
            info = backend.info
            model = EntryModel(
                info.name,
                info.version,
                info.kind,
                info.modality,
                backend.provider,
                backend.precision,
            )
            timing = Timing(elapsed_ms / max(len(samples), 1), elapsed_ms, len(samples))
            entries.append(
                BenchmarkEntry(kind, modality, model, fallback, summarise(rows), rows, timing)
            )
    return BenchmarkResults(labelled.name, labelled.layout, entries)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


KIND = "benchmark"


class BenchmarkRunner:
    """Benchmark runs as jobs of kind ``benchmark`` of a ``service.jobs`` executor (one run at a
    time in process by default); results go to ``store``.

    A ``Heartbeat`` thread renews the store's lease on this runner's runs every ``heartbeat_s``
    seconds, so that other workers sharing the store can tell them from abandoned ones, and
    records the runs of any worker whose lease lapsed as interrupted. At most
    ``max_pending`` runs are queued or running; past that ``reserve`` / ``submit`` refuse
    (``BusyError``). ``executor``: the one the app's other job kinds use (a new
    ``LocalExecutor`` when None).
    """

    def __init__(
        self,
        store: RunStore,
        segmenter: Segmenter,
        workers: int = 1,
        heartbeat_s: float = HEARTBEAT_S,
        max_pending: int = 4,
        retry_after_s: int = 30,
        executor: LocalExecutor | None = None,
    ) -> None:
        self.store = store
        self.segmenter = segmenter
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        self.executor = executor or LocalExecutor()
        self.executor.register(
            KIND,
            self._run,
            workers=workers,
            max_pending=max_pending,
            retry_after_s=retry_after_s,
            busy_message=f"{max_pending} benchmark runs are queued or running in this worker "
            "(LUNGSEG_BENCHMARK_MAX_PENDING); retry later",
        )
        self._heartbeat = Heartbeat([store], heartbeat_s)

    def reserve(self) -> Reservation:
        """A place in this worker's queue, taken before the upload is read or extracted.

        Raises:
            BusyError: ``max_pending`` runs are queued or running (503 + Retry-After).
        """
        return self.executor.reserve(KIND)

    def submit(
        self,
        labelled: LabelledSet,
        models: list[str],
        cleanup: Path | None = None,
        reservation: Reservation | None = None,
    ) -> tuple[dict[str, Any], Future[None]]:
        """Queue a run in ``reservation``'s place (one is taken when none is given); the
        place is freed and ``cleanup`` (an extracted upload) removed when the run ends, or
        at once when no place is free (``BusyError``)."""
        tidy = partial(_remove, cleanup)
        try:
            place = reservation or self.reserve()
        except BusyError:
            tidy()
            raise
        try:
            run_id = str(uuid.uuid4())
            record = self.store.create(run_id, labelled.name, list(models), len(labelled.samples))
        except BaseException:
            place.release()
            tidy()
            raise
        job = Job(KIND, run_id, {"set_name": labelled.name, "models": list(models)}, labelled)
        return record, self.executor.submit(job, place, tidy)

    def _run(self, job: Job) -> None:
        """The worker of kind ``benchmark``: the set is the job's payload (read in process)."""
        labelled: LabelledSet = job.payload
        models = list(job.params["models"])

        def record(status: str, results: BenchmarkResults | None, error: str | None) -> None:
            done = results.to_dict() if results is not None else None
            self.store.set_status(job.id, status, results=done, error=error)

        self.store.set_status(job.id, "running")
        record_outcome(job, lambda: score_models(self.segmenter, labelled, models), record)

    def shutdown(self) -> None:
        """Stop: queued runs are cancelled, and this runner's unfinished runs are recorded as
        interrupted (a run still computing may yet record ``done`` before the process ends)."""
        self._heartbeat.stop()
        self.executor.shutdown([KIND])
        abandoned = self.store.abandon()
        if abandoned:
            log.warning("%d benchmark runs were interrupted by the shutdown", abandoned)
