"""Benchmark jobs: score models on a labelled set in the background (a ``service.jobs`` kind),
persist the results.

Two shapes of run, both jobs of kind ``benchmark``:

* an **uploaded set** (a zip extracted into this worker's private folder): one job whose payload
  is the set, run where it was received (:func:`service.benchmark.results.score_models`);
* a **server-side set** (``set_name``, ``LUNGSEG_BENCHMARK_SETS``): split into chunks of
  ``chunk_images`` images (``LUNGSEG_BENCHMARK_CHUNK_IMAGES``), one job each with no payload
  (any replica reads the set by its name), submitted as one group. Each chunk writes its
  per-image rows to the store (:func:`service.benchmark.chunks.score_chunk`); the chunk that
  ends last merges every chunk's rows into the run's results
  (:func:`service.benchmark.chunks.merge_chunks`: the summaries computed from all rows by
  :func:`service.benchmark.evaluate.summarise`, as one process computes them). With a shared
  queue (``service.jobs.queue``) the chunks run on whichever replicas are free; in process
  they run one after another.

The result types and :func:`score_models` live in :mod:`service.benchmark.results`, the
chunks' bounds, scoring and merge in :mod:`service.benchmark.chunks`; both are re-exported here.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from service.benchmark.chunks import chunk_bounds, merge_chunks, merge_outcome, score_chunk
from service.benchmark.results import (
    BenchmarkEntry,
    BenchmarkResults,
    EntryModel,
    Timing,
    score_models,
)
from service.benchmark.store import HEARTBEAT_S, QUEUE_OWNER, Heartbeat, RunStore
from service.datasets import LabelledSet, read_set
from service.errors import BusyError, InvalidInputError, NotFoundError
from service.jobs import (
    QUEUE_ERROR,
    Executor,
    Job,
    JobStopped,
    LocalExecutor,
    Reservation,
    record_outcome,
)
from service.models.segmenter import Segmenter

__all__ = [
    "CHUNK_IMAGES",
    "KIND",
    "RETRIES",
    "BenchmarkEntry",
    "BenchmarkResults",
    "BenchmarkRunner",
    "EntryModel",
    "Timing",
    "chunk_bounds",
    "merge_chunks",
    "score_chunk",
    "score_models",
]

log = logging.getLogger(__name__)


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
                if not self.store.finish_chunk(run_id, index, result, merge_outcome):
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
