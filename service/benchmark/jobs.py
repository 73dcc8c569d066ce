"""Benchmark jobs: score models on a labelled set in the background (a ``service.jobs`` kind),
persist the results.

Two shapes of run, both jobs of kind ``benchmark``:

* an **uploaded set** (a zip extracted into this worker's private folder): one job whose payload
  is the set, run where it was received (:func:`score_models`);
* a **server-side set** (``set_name``, ``LUNGSEG_BENCHMARK_SETS``): split into chunks of
  ``chunk_images`` images (``LUNGSEG_BENCHMARK_CHUNK_IMAGES``), one job each with no payload
  (any replica reads the set by its name), submitted as one group. Each chunk writes its
  per-image rows to the store (:func:`score_chunk`); the chunk that ends last merges every
  chunk's rows into the run's results (:func:`merge_chunks`: the summaries computed from all
  rows by :func:`service.benchmark.evaluate.summarise`, as one process computes them). With a
  shared queue (``service.jobs.queue``) the chunks run on whichever replicas are free; in
  process they run one after another.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from service.benchmark.evaluate import ImageScore, Summary, evaluate, summarise
from service.benchmark.store import HEARTBEAT_S, QUEUE_OWNER, Heartbeat, RunStore
from service.datasets import LabelledSet, read_set
from service.errors import BusyError, InvalidInputError, LungsegError, NotFoundError
from service.imaging.types import DecodedImage
from service.jobs import (
    QUEUE_ERROR,
    Executor,
    Job,
    JobStopped,
    LocalExecutor,
    Reservation,
    record_outcome,
)
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

    def gated(backend: Backend[Any], image: DecodedImage) -> list[FrameResult]:
        return segmenter.run(backend, image, keep_probabilities=True, frames=[0])

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
            info = backend.info
            model = EntryModel(
                info.name,
                info.version,
                info.kind,
                info.modality,
                backend.provider,
                backend.precision,
            )
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


def _merged(parts: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None, str | None]:
    try:
        return "done", merge_chunks(parts).to_dict(), None
    except LungsegError as err:
        return "failed", None, str(err)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


KIND = "benchmark"
CHUNK_IMAGES = 50
RETRIES = 2


class BenchmarkRunner:
    """Benchmark runs as jobs of kind ``benchmark`` of a ``service.jobs`` executor (one run at a
    time in process by default); results go to ``store``.

    A ``Heartbeat`` thread renews the store's lease on this runner's runs every ``heartbeat_s``
    seconds, so that other workers sharing the store can tell them from abandoned ones, and
    records the runs of any worker whose lease lapsed as interrupted. At most
    ``max_pending`` runs posted here are queued or running; past that ``reserve`` / ``submit``
    refuse (``BusyError``). ``executor``: the one the app's other job kinds use (a new
    ``LocalExecutor`` when None). ``sets``: the server-side sets by name (a chunk's worker
    reads its set by name); ``chunk_images``: images per chunk of a server-side set's run;
    ``retries``: how often a chunk is run again when the replica running it died or stopped
    (a shared queue only).
    """

    def __init__(
        self,
        store: RunStore,
        segmenter: Segmenter,
        workers: int = 1,
        heartbeat_s: float = HEARTBEAT_S,
        max_pending: int = 4,
        retry_after_s: int = 30,
        executor: Executor | None = None,
        *,
        sets: Mapping[str, Path] | None = None,
        chunk_images: int = CHUNK_IMAGES,
        retries: int = RETRIES,
    ) -> None:
        self.store = store
        self.segmenter = segmenter
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        self.sets = dict(sets or {})
        self.chunk_images = chunk_images
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self.executor.register(
            KIND,
            self._work,
            workers=workers,
            max_pending=max_pending,
            retry_after_s=retry_after_s,
            busy_message=f"{max_pending} benchmark runs are queued or running in this worker "
            "(LUNGSEG_BENCHMARK_MAX_PENDING); retry later",
            retries=retries,
            load=self._load,
            lost=self._lost,
        )
        self._heartbeat = Heartbeat([store], heartbeat_s)
        self._sets_read: dict[str, LabelledSet] = {}
        self._sets_lock = threading.Lock()

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
        *,
        server_side: bool = False,
    ) -> tuple[dict[str, Any], Future[None]]:
        """Queue a run in ``reservation``'s place (one is taken when none is given); the
        place is freed and ``cleanup`` (an extracted upload) removed when the run ends, or
        at once when no place is free (``BusyError``). ``server_side``: ``labelled`` is the
        server-side set of its name, which any worker can read: the run goes in chunks."""
        tidy = partial(_remove, cleanup)
        try:
            place = reservation or self.reserve()
        except BusyError:
            tidy()
            raise
        run_id = str(uuid.uuid4())
        models = list(models)
        n_images = len(labelled.samples)
        if server_side:
            bounds = chunk_bounds(n_images, self.chunk_images)
            jobs = [
                Job(KIND, f"{run_id}/{i}", self._chunk_params(run_id, i, labelled, models, bounds))
                for i in range(len(bounds))
            ]
        else:
            bounds = None
            params = {"set_name": labelled.name, "models": models}
            jobs = [Job(KIND, run_id, params, labelled)]
        owner = QUEUE_OWNER if self.executor.travels(jobs[0]) else None
        try:
            record = self.store.create(run_id, labelled.name, models, n_images, owner, bounds)
        except BaseException:
            place.release()
            tidy()
            raise
        try:
            return record, self.executor.submit_group(jobs, place, tidy)
        except BaseException:
            log.exception("benchmark run %s could not be queued", run_id)
            self.store.set_status(run_id, "failed", error=QUEUE_ERROR)
            raise

    @staticmethod
    def _chunk_params(
        run_id: str,
        index: int,
        labelled: LabelledSet,
        models: list[str],
        bounds: list[tuple[int, int]],
    ) -> dict[str, Any]:
        start, stop = bounds[index]
        return {
            "run_id": run_id,
            "chunk": index,
            "set_name": labelled.name,
            "models": models,
            "n_images": len(labelled.samples),
            "start": start,
            "stop": stop,
        }

    # -- the worker ------------------------------------------------------------------------

    def _work(self, job: Job) -> None:
        """The worker of kind ``benchmark``: a chunk of a server-side set's run, or a whole
        run whose set is the job's payload."""
        if "chunk" in job.params:
            self._run_chunk(job)
        else:
            self._run(job)

    def _run(self, job: Job) -> None:
        """A run of an uploaded set: the set is the job's payload (read in process)."""
        labelled: LabelledSet = job.payload
        models = list(job.params["models"])

        def record(status: str, results: BenchmarkResults | None, error: str | None) -> None:
            done = results.to_dict() if results is not None else None
            self.store.set_status(job.id, status, results=done, error=error)

        if not self.store.set_status(job.id, "running"):
            raise JobStopped(job.id)
        record_outcome(job, lambda: score_models(self.segmenter, labelled, models), record)

    def _run_chunk(self, job: Job) -> None:
        params = job.params
        run_id, index = str(params["run_id"]), int(params["chunk"])
        if not self.store.start_chunk(run_id, index, self.store.owner):
            raise JobStopped(job.id)

        def work() -> dict[str, Any]:
            labelled = self._server_set(str(params["set_name"]), int(params["n_images"]))
            models = list(params["models"])
            return score_chunk(
                self.segmenter, labelled, models, params["start"], params["stop"], job.stop
            )

        def record(status: str, result: dict[str, Any] | None, error: str | None) -> None:
            if status == "done" and result is not None:
                if not self.store.finish_chunk(run_id, index, result, _merged):
                    raise JobStopped(job.id)
            else:
                self.store.set_status(run_id, "failed", error=error)

        record_outcome(job, work, record)

    def _server_set(self, name: str, n_images: int) -> LabelledSet:
        """The server-side set ``name`` as this worker reads it (kept while it has
        ``n_images``: a set that changed is read again)."""
        with self._sets_lock:
            found = self._sets_read.get(name)
        if found is not None and len(found.samples) == n_images:
            return found
        path = self.sets.get(name)
        if path is None:
            raise NotFoundError(
                f"no server-side set {name!r} on the worker that ran the run's chunk: every "
                "replica needs the same LUNGSEG_BENCHMARK_SETS"
            )
        labelled = read_set(path, name=name)
        if len(labelled.samples) != n_images:
            raise InvalidInputError(
                f"the server-side set {name!r} has {len(labelled.samples)} images here, not "
                f"the run's {n_images}: it changed, or differs between replicas"
            )
        with self._sets_lock:
            self._sets_read = {name: labelled}
        return labelled

    # -- the shared queue's hooks ----------------------------------------------------------

    def _load(self, job_id: str) -> dict[str, Any] | None:
        """A chunk's params by its job id (``<run id>/<index>``), None once the run ended."""
        run_id, _, index = job_id.rpartition("/")
        return self.store.chunk(run_id, int(index)) if run_id and index.isdigit() else None

    def _lost(self, job_id: str) -> None:
        """A chunk could not be run (its replicas died or stopped, no retry left): the run
        is interrupted."""
        self.store.interrupt(job_id.partition("/")[0])

    def shutdown(self) -> None:
        """Stop: queued runs are cancelled, and this runner's unfinished runs are recorded as
        interrupted (a run still computing may yet record ``done`` before the process ends);
        with a shared queue, the chunks running here are handed back to it."""
        self._heartbeat.stop()
        self.executor.shutdown([KIND])
        abandoned = self.store.abandon()
        if abandoned:
            log.warning("%d benchmark runs were interrupted by the shutdown", abandoned)
