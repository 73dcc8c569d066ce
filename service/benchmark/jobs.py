"""Benchmark jobs: score models on a labelled set in a background thread, persist the results."""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.benchmark.evaluate import ImageScore, Summary, evaluate, summarise
from service.benchmark.store import HEARTBEAT_S, Heartbeat, RunStore
from service.datasets import LabelledSet
from service.errors import BusyError, LungsegError
from service.imaging.types import DecodedImage
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


class Reservation:
    """A place in a runner's queue; ``release`` frees it once (later calls do nothing).
    ``taken`` is set when a submitted run owns it (the run frees it when it ends)."""

    def __init__(self, runner: BenchmarkRunner) -> None:
        self._runner = runner
        self._lock = threading.Lock()
        self._held = True
        self.taken = False

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._runner._free()


class BenchmarkRunner:
    """Runs benchmark jobs one at a time in a worker thread; results go to ``store``.

    A ``Heartbeat`` thread renews the store's lease on this runner's runs every ``heartbeat_s``
    seconds, so that other workers sharing the store can tell them from abandoned ones, and
    records the runs of any worker whose lease lapsed as interrupted. At most
    ``max_pending`` runs are queued or running; past that ``submit`` refuses (``BusyError``).
    """

    def __init__(
        self,
        store: RunStore,
        segmenter: Segmenter,
        workers: int = 1,
        heartbeat_s: float = HEARTBEAT_S,
        max_pending: int = 4,
        retry_after_s: int = 30,
    ) -> None:
        self.store = store
        self.segmenter = segmenter
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="lungseg-benchmark")
        self._heartbeat = Heartbeat([store], heartbeat_s)

    def reserve(self) -> Reservation:
        """A place in this worker's queue, taken before the upload is read or extracted.

        Raises:
            BusyError: ``max_pending`` runs are queued or running (503 + Retry-After).
        """
        with self._pending_lock:
            if self._pending < self.max_pending:
                self._pending += 1
                return Reservation(self)
        raise BusyError(
            f"{self.max_pending} benchmark runs are queued or running in this worker "
            "(LUNGSEG_BENCHMARK_MAX_PENDING); retry later",
            self.retry_after_s,
        )

    def _free(self) -> None:
        with self._pending_lock:
            self._pending -= 1

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
        try:
            place = reservation or self.reserve()
        except BusyError:
            _remove(cleanup)
            raise
        try:
            run_id = str(uuid.uuid4())
            record = self.store.create(run_id, labelled.name, list(models), len(labelled.samples))
            future = self._pool.submit(self._run, run_id, labelled, models, cleanup, place)
        except BaseException:
            place.release()
            _remove(cleanup)
            raise
        place.taken = True
        return record, future

    def _run(
        self,
        run_id: str,
        labelled: LabelledSet,
        models: list[str],
        cleanup: Path | None,
        place: Reservation,
    ) -> None:
        try:
            self.store.set_status(run_id, "running")
            results = score_models(self.segmenter, labelled, models)
        except LungsegError as err:
            log.warning("benchmark %s failed: %s", run_id, err)
            self.store.set_status(run_id, "failed", error=str(err))
        except Exception:  # a worker thread must record any failure instead of dying silently
            log.exception("benchmark %s crashed", run_id)
            self.store.set_status(run_id, "failed", error="internal error; see the service log")
        else:
            self.store.set_status(run_id, "done", results=results.to_dict())
        finally:
            place.release()
            _remove(cleanup)

    def shutdown(self) -> None:
        """Stop: queued runs are cancelled, and this runner's unfinished runs are recorded as
        interrupted (a run still computing may yet record ``done`` before the process ends)."""
        self._heartbeat.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        abandoned = self.store.abandon()
        if abandoned:
            log.warning("%d benchmark runs were interrupted by the shutdown", abandoned)
