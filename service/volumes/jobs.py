"""Volume jobs: a CT series or NIfTI segmented in the background, kind ``volume`` of a
``service.jobs`` executor, recorded in a ``VolumeStore``.

    jobs = VolumeJobs(store, segmenter, ttl_s=3600, pacs=DicomwebConfig(...) or None)
    place = jobs.reserve()                          # before the upload is read (503 when full)
    volume = jobs.load(files, series_uid)           # an upload, assembled in the request
    record, future = jobs.submit(request, place, Payload(volume, files=n, assemble_ms=t))
    record, future = jobs.submit(request, place)    # a PACS pull: the worker retrieves it
    jobs.get(job_id, client) / jobs.list(limit, client) / jobs.artifact(job_id, name, client)
    jobs.shutdown()

The worker (:meth:`VolumeJobs.run`): ``running``; the series retrieved by WADO-RS for a PACS
pull and assembled; segmented with progress (slices done of total, which also renews the
lease; the job stops when its row is no longer active); the files of
:mod:`service.volumes.artifacts` made while the volume is in memory, then the volume dropped;
the SEG stored in the PACS when asked (a failure there is recorded, never fatal); the files
and then ``done`` with the measures (:func:`service.volumes.document.result_document`) written
to the store; ``failed`` with the reason otherwise. An upload's volume is the job's in-process
payload: uploads are never written to disk, nor staged in the database, so an upload's job runs
on the replica that received it (leased: ``interrupted`` if that replica dies). A PACS pull has
no payload (its params say what to retrieve): with a shared queue (``service.jobs.queue``) any
replica may run it, and it is run again (``retries``) when the replica running it died or
stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import nullcontext
from functools import partial
from typing import Any

from service.benchmark.jobstore import ACTIVE, HEARTBEAT_S, QUEUE_OWNER, Heartbeat
from service.benchmark.volume_store import DEFAULT_TTL_S, Artifact, VolumeStore
from service.dicomweb import DicomwebClient, DicomwebConfig
from service.errors import InvalidParameterError
from service.imaging.types import SourceRef
from service.imaging.volume import Volume
from service.jobs import (
    QUEUE_ERROR,
    Executor,
    Job,
    JobStopped,
    LocalExecutor,
    Reservation,
    record_outcome,
)
from service.models.gates import StageClock
from service.models.segmenter import Segmenter
from service.pipeline.result import EncodedFile
from service.pipeline.volume import VolumeSegmentation
from service.volumes import artifacts
from service.volumes.document import VolumeRequest, result_document, skipped_counts
from service.volumes.pacs import ClientFactory, pull_series, store_seg

log = logging.getLogger(__name__)
KIND = "volume"
PREVIEWS_KEPT = 2
RETRIES = 2


class Payload:
    """An upload assembled in the request, waiting for its job: :meth:`take` hands the volume
    over once (the job then holds the only reference, dropped once segmented)."""

    def __init__(self, volume: Volume, files: int, assemble_ms: float) -> None:
        self._volume: Volume | None = volume
        self.files = files
        self.assemble_ms = assemble_ms

    def take(self) -> Volume:
        volume, self._volume = self._volume, None
        if volume is None:
            raise RuntimeError("the payload's volume was taken already")
        return volume

    def __repr__(self) -> str:
        return f"Payload({self.files} file(s))"


class VolumeJobs:
    """Volume jobs of this worker (see the module docstring). ``executor``: the app's (a new
    ``LocalExecutor`` when None); ``pacs``: the DICOMweb settings, None without a PACS."""

    def __init__(
        self,
        store: VolumeStore,
        segmenter: Segmenter,
        executor: Executor | None = None,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        pacs: DicomwebConfig | None = None,
        max_pending: int = 2,
        retry_after_s: int = 30,
        heartbeat_s: float = HEARTBEAT_S,
        client: ClientFactory = DicomwebClient,
        retries: int = RETRIES,
    ) -> None:
        self.store = store
        self.segmenter = segmenter
        self.ttl_s = ttl_s
        self.pacs = pacs
        self._client = client
        self.executor = executor if executor is not None else LocalExecutor()
        self.executor.register(
            KIND,
            self.run,
            workers=1,
            max_pending=max_pending,
            retry_after_s=retry_after_s,
            busy_message=f"{max_pending} volume jobs are queued or running in this worker "
            "(LUNGSEG_VOLUME_MAX_PENDING); retry later",
            retries=retries,
            load=self._load,
            lost=self._lost,
        )
        self._heartbeat = Heartbeat([store], heartbeat_s, name="lungseg-volume-heartbeat")
        self._previews: OrderedDict[str, Artifact] = OrderedDict()
        self._previews_lock = threading.Lock()

    # -- the request side ------------------------------------------------------------------

    def reserve(self) -> Reservation:
        """A place in the queue, before the upload is read. Raises BusyError (503)."""
        return self.executor.reserve(KIND)

    def load(
        self, files: list[bytes], series_uid: str | None, clock: StageClock | None = None
    ) -> Volume:
        """Assemble an upload (``Segmenter.load_volume``: SeriesChoiceError lists the series
        of a multi-series upload without ``series_uid``)."""
        return self.segmenter.load_volume(files, series_uid, clock)

    def submit(
        self, request: VolumeRequest, place: Reservation, payload: Payload | None = None
    ) -> tuple[dict[str, Any], Future[None]]:
        """Create the job (queued, leased by this worker) and queue it in ``place``."""
        if payload is None and request.source != "pacs":
            raise ValueError("an upload's job needs its payload")
        if request.source == "pacs" and self.pacs is None:
            raise InvalidParameterError(
                "no PACS is configured (LUNGSEG_DICOMWEB_URL): upload the series instead"
            )
        job_id = str(uuid.uuid4())
        params = request.to_params()
        job = Job(KIND, job_id, params, payload)
        owner = QUEUE_OWNER if self.executor.travels(job) else None
        try:
            record = self.store.create(job_id, params, ttl_s=self.ttl_s, total=None, owner=owner)
        except BaseException:
            place.release()
            raise
        try:
            return record, self.executor.submit(job, place)
        except BaseException:
            log.exception("volume job %s could not be queued", job_id)
            self.store.set_status(job_id, "failed", error=QUEUE_ERROR)
            raise

    def get(self, job_id: str, client: str | None) -> dict[str, Any] | None:
        """The job, None when unknown, expired or another client's (``client`` None: any)."""
        job = self.store.get(job_id)
        if job is None or (client is not None and job["params"].get("client") != client):
            return None
        return job

    def list(self, limit: int, client: str | None) -> list[dict[str, Any]]:
        """Recent jobs, newest first (``client``'s own unless None)."""
        jobs = self.store.list(limit if client is None else max(limit * 10, 1000))
        mine = [j for j in jobs if client is None or j["params"].get("client") == client]
        return mine[:limit]

    def artifact(self, job_id: str, name: str) -> Artifact | None:
        """A job's file from the store; the display copies of the last :data:`PREVIEWS_KEPT`
        jobs are kept in memory too (a viewer scrolling reads one per slice: the caller checks
        that the job still exists first)."""
        if name != artifacts.PREVIEW:
            return self.store.get_artifact(job_id, name)
        with self._previews_lock:
            found = self._previews.pop(job_id, None)
        if found is None:
            found = self.store.get_artifact(job_id, name)
        if found is not None:
            with self._previews_lock:
                self._previews[job_id] = found
                while len(self._previews) > PREVIEWS_KEPT:
                    self._previews.popitem(last=False)
        return found

    # -- the worker ------------------------------------------------------------------------

    def run(self, job: Job) -> None:
        """The worker of kind ``volume`` (see the module docstring)."""
        request = VolumeRequest.from_params(job.params)

        def record(status: str, result: dict[str, Any] | None, error: str | None) -> None:
            self.store.set_status(job.id, status, result=result, error=error)

        if not self.store.set_status(job.id, "running"):
            raise JobStopped(job.id)
        record_outcome(job, lambda: self._segment(job, request, job.payload), record)

    def _progress(self, job: Job, done: int, total: int) -> None:
        if job.stop.is_set() or not self.store.set_progress(job.id, done, total):
            raise JobStopped(job.id)

    def _load(self, job_id: str) -> dict[str, Any] | None:
        """A travelling job's params from its row (None once it ended or expired)."""
        found = self.store.get(job_id)
        return dict(found["params"]) if found is not None and found["status"] in ACTIVE else None

    def _lost(self, job_id: str) -> None:
        """A PACS job could not be run (its replicas died or stopped, no retry left)."""
        self.store.interrupt(job_id)

    def _volume(
        self, request: VolumeRequest, payload: Payload | None, clock: StageClock
    ) -> tuple[Volume, int]:
        if payload is not None:
            clock.ms["assemble"] = payload.assemble_ms
            return payload.take(), payload.files
        if self.pacs is None or request.study_uid is None or request.series_uid is None:
            raise InvalidParameterError("no PACS is configured (LUNGSEG_DICOMWEB_URL)")
        config, study, series = self.pacs, request.study_uid, request.series_uid
        files = clock.run(
            "retrieve", lambda: pull_series(config, study, series, self._client), nullcontext()
        )
        return self.load(files, series, clock), len(files)

    def _segment(self, job: Job, request: VolumeRequest, payload: Payload | None) -> dict[str, Any]:
        job_id = job.id
        clock = StageClock()
        volume, n_files = self._volume(request, payload, clock)
        self._progress(job, 0, volume.shape[0])
        progress = lambda done, total: self._progress(job, done, total)  # noqa: E731
        result = self.segmenter.segment_volume(volume, request.model, progress, clock=clock)

        encode = partial(self._encode, volume, result)  # binds, so that `del` frees it
        files, size, skipped = clock.run("encode", encode, nullcontext())
        del encode
        source = volume.source
        del volume  # from here on only the labels and measures are held
        store = None
        if request.store:
            store = clock.run("store", lambda: self._store(files, source), nullcontext())
        for name, encoded in files.items():
            self.store.put_artifact(job_id, name, encoded.media_type, encoded.content)
        result = dataclasses.replace(result, timings_ms=clock.total())
        return result_document(result, skipped=skipped, files=n_files, preview=size, store=store)

    @staticmethod
    def _encode(
        volume: Volume, result: VolumeSegmentation
    ) -> tuple[dict[str, EncodedFile], tuple[int, int], dict[str, int]]:
        """Every file of the job, while the volume is in memory (the preview needs its
        voxels, the SEG its headers)."""
        shown, size = artifacts.display_files(volume)
        files = artifacts.result_files(result, artifacts.seg_file(volume, result))
        return files | {artifacts.PREVIEW: shown}, size, skipped_counts(volume)

    def _store(self, files: dict[str, EncodedFile], source: SourceRef | None) -> dict[str, Any]:
        seg = files.get(artifacts.SEG)
        if seg is None:
            return {
                "status": "failed",
                "attempts": 0,
                "error": "nothing stored: a DICOM SEG needs a DICOM source (this volume is NIfTI)",
            }
        if self.pacs is None:
            return {"status": "failed", "attempts": 0, "error": "no PACS is configured"}
        uid = artifacts.sop_instance_uid(seg.content)
        study = source.study_uid if source is not None and source.study_uid else None
        record = store_seg(self.pacs, seg.content, uid, study, self._client)
        log.info("volume SEG store: %s after %d attempt(s)", record["status"], record["attempts"])
        return record

    def shutdown(self) -> None:
        """Stop: queued jobs cancelled, this worker's unfinished jobs recorded interrupted."""
        self._heartbeat.stop()
        self._previews.clear()
        self.executor.shutdown([KIND])
        abandoned = self.store.abandon()
        if abandoned:
            log.warning("%d volume jobs were interrupted by the shutdown", abandoned)
