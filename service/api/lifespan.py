"""Start-up and shutdown: build the segmenter, the job stores and the job runners once."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import cv2
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service import NOT_A_MEDICAL_DEVICE
from service.api.admission import Admission
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.benchmark.archive import ExtractionArea
from service.benchmark.jobs import BenchmarkRunner
from service.benchmark.store import RunStore
from service.benchmark.volume_store import VolumeStore
from service.jobs import Executor, LocalExecutor
from service.jobs.queue import ProcrastinateExecutor
from service.models.segmenter import Segmenter
from service.volumes.jobs import VolumeJobs

log = logging.getLogger("lungseg")


def _report(segmenter: Segmenter, metrics: Metrics, seconds: float) -> None:
    for name, backend in segmenter.registry.models.items():
        info = backend.info
        metrics.model_info.labels(
            name, info.version, info.kind, info.modality, backend.provider
        ).set(1)
        log.info("model %s %s ready on %s", name, info.version, backend.provider)
    for name, reason in segmenter.registry.unavailable.items():
        metrics.model_unavailable.labels(name).set(1)
        log.warning("model %s unavailable (requests fall back to threshold): %s", name, reason)
    log.info("ready in %.2f s. %s", seconds, NOT_A_MEDICAL_DEVICE)


def lifespan_for(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan context of an app built with ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start = time.perf_counter()
        pacs = settings.dicomweb_config()  # a bad PACS setting stops the start at once
        if settings.dicomweb_store and pacs is None:
            log.warning("LUNGSEG_DICOMWEB_STORE is set without LUNGSEG_DICOMWEB_URL: ignored")
        # OpenCV's own thread pool would multiply with the concurrent inferences: one thread
        # per inference keeps threads x in-flight inferences <= cores.
        cv2.setNumThreads(settings.threads_per_inference)
        shared = settings.shared_queue()  # a queue asked of SQLite stops the start at once
        segmenter = await run_in_threadpool(Segmenter, settings.segmenter_config())
        lease = settings.job_lease_s
        store = RunStore(settings.database_url, stale_after_s=lease)
        interrupted = store.mark_interrupted()
        if interrupted:
            log.warning("%d benchmark runs had lost their worker: marked interrupted", interrupted)
        volume_store = VolumeStore(store.engine, stale_after_s=lease)  # one database, one engine
        lost = volume_store.mark_interrupted()
        if lost:
            log.warning("%d volume jobs had lost their worker: marked interrupted", lost)
        app.state.segmenter = segmenter
        app.state.extractions = ExtractionArea(settings.benchmark_disk_quota_bytes)
        # Every kind of job of this worker (service.jobs): in process, or shared by the
        # replicas through a procrastinate queue in the PostgreSQL store (service.jobs.queue).
        heartbeat = settings.job_heartbeat_s
        executor: Executor = (
            ProcrastinateExecutor(settings.database_url, heartbeat_s=heartbeat, lease_s=lease)
            if shared
            else LocalExecutor()
        )
        app.state.runner = BenchmarkRunner(
            store,
            segmenter,
            max_pending=settings.benchmark_max_pending,
            executor=executor,
            heartbeat_s=heartbeat,
            sets=settings.benchmark_sets,
            chunk_images=settings.benchmark_chunk_images,
            retries=settings.job_retries,
        )
        app.state.volumes = VolumeJobs(
            volume_store,
            segmenter,
            executor,
            ttl_s=settings.result_ttl_s,
            pacs=pacs,
            max_pending=settings.volume_max_pending,
            heartbeat_s=heartbeat,
            retries=settings.job_retries,
        )
        await run_in_threadpool(executor.start)
        app.state.executor = executor
        log.info("background jobs: %s", "shared PostgreSQL queue" if shared else "in process")
        in_flight = settings.in_flight_limit
        if segmenter.batched and not settings.max_in_flight:
            in_flight = max(in_flight, settings.max_batch)  # room to fill a GPU batch
        metrics: Metrics = app.state.metrics
        app.state.admission = Admission(
            in_flight + settings.queue_limit,
            settings.retry_after_s,
            observe=metrics.inference_queue.set,
            on_refusal=metrics.rejected.inc,
        )
        _report(segmenter, metrics, time.perf_counter() - start)
        try:
            yield
        finally:
            app.state.runner.shutdown()
            app.state.volumes.shutdown()
            executor.shutdown()
            app.state.extractions.close()
            segmenter.close()
            store.engine.dispose()
            metrics.worker_exited()

    return lifespan
