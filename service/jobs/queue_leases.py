"""The shared job queue's worker side: a travelling kind's worker, its leases, hand-back, recovery.

Used by :class:`service.jobs.queue.ProcrastinateExecutor`, which holds a :class:`Travelling`
entry per kind whose jobs travel. Every replica runs :func:`consume` per kind: procrastinate's
worker, which runs each job it takes with :func:`execute` (the kind's worker in a thread of its
own, the params read with ``load``).

**A replica that dies or stops**: each worker renews its procrastinate heartbeat every
``heartbeat_s``. Every replica checks every ``heartbeat_s`` (:func:`recovery`, one at a time: a
PostgreSQL advisory lock) for jobs left ``doing`` by workers silent for ``lease_s`` (killed,
frozen, cut off): such a job is queued again while it has retries left (``retries`` per kind),
else ``lost(job_id)`` records it interrupted (:func:`recover_stalled`). A replica shutting down
hands its running travelling jobs back the same way at once (:class:`HandBack`; ``Job.stop`` is
set: the job's thread stops at its next check and records nothing). A travelling job's row is
owned by the queue, not leased by one replica (``service.benchmark.jobstore.QUEUE_OWNER``): this
recovery decides its fate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import procrastinate
import psycopg
from procrastinate.exceptions import ProcrastinateException
from procrastinate.job_context import JobContext
from procrastinate.jobs import Job as QueuedJob
from procrastinate.jobs import Status
from procrastinate.manager import JobManager
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from service.jobs.executor import Job, JobStopped, Loader, Worker
from service.jobs.queue_schema import LOCK_KEY, QUEUE_PREFIX

log = logging.getLogger("service.jobs.queue")  # the queue's log lines keep one logger name


class HandBack(BaseRetryStrategy):
    """A job cancelled by its worker's shutdown is queued again while it has retries left;
    nothing else is retried by procrastinate (the workers record their own failures)."""

    def __init__(self, retries: int) -> None:
        self.retries = retries

    def get_retry_decision(
        self, *, exception: BaseException, job: QueuedJob
    ) -> RetryDecision | None:
        if isinstance(exception, asyncio.CancelledError) and job.attempts < self.retries:
            return RetryDecision()
        return None


@dataclass
class Travelling:
    """A kind whose jobs without a payload travel: its worker, ``workers`` at once per
    replica, its ``retries``, its ``load`` and ``lost`` hooks, its procrastinate task."""

    kind: str
    worker: Worker
    workers: int
    retries: int
    load: Loader
    lost: Callable[[str], None]
    task: Any = None  # the procrastinate task

    @property
    def queue(self) -> str:
        return QUEUE_PREFIX + self.kind


async def consume(
    app: procrastinate.App,
    entry: Travelling,
    closing: asyncio.Event,
    *,
    heartbeat_s: float,
    lease_s: float,
    grace_s: float,
) -> None:
    """The kind's procrastinate worker, started again after a database failure (until
    ``closing`` is set)."""
    while not closing.is_set():
        try:
            await app.run_worker_async(
                queues=[entry.queue],
                name=f"lungseg-{entry.kind}",
                concurrency=entry.workers,
                wait=True,
                fetch_job_polling_interval=min(1.0, heartbeat_s),
                abort_job_polling_interval=heartbeat_s,
                shutdown_graceful_timeout=grace_s,
                listen_notify=True,
                delete_jobs="always",
                install_signal_handlers=False,
                update_heartbeat_interval=heartbeat_s,
                stalled_worker_timeout=lease_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # the database went away: try again after a heartbeat
            log.warning(
                "job queue: the %s worker stopped; starting it again", entry.kind, exc_info=True
            )
        if not closing.is_set():
            await asyncio.sleep(heartbeat_s)


async def execute(entry: Travelling, context: JobContext, job_id: str) -> None:
    """Run ``entry``'s worker on the job in a daemon thread of its own (a shutdown does not
    wait for it); cancelled (the worker stopping), the job is handed back or lost."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()
    stop = threading.Event()

    def resolve() -> None:
        if not ended.done():
            ended.set_result(None)

    def body() -> None:
        try:
            params = entry.load(job_id)
            if params is None:
                log.info("%s job %s is no longer active: skipped", entry.kind, job_id)
            else:
                entry.worker(Job(entry.kind, job_id, params, stop=stop))
        except JobStopped:
            log.info("%s job %s stopped: no longer active", entry.kind, job_id)
        except Exception:  # a bug: the job cannot end otherwise
            log.exception("%s job %s crashed", entry.kind, job_id)
            lose(entry, job_id)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(resolve)

    threading.Thread(target=body, name=f"lungseg-{entry.kind}-job", daemon=True).start()
    try:
        await ended
    except asyncio.CancelledError:
        stop.set()
        attempt = context.job.attempts
        if attempt < entry.retries:
            log.warning(
                "%s job %s handed back to the queue (retry %d of %d)",
                entry.kind,
                job_id,
                attempt + 1,
                entry.retries,
            )
        else:
            log.warning("%s job %s stopped with no retry left: interrupted", entry.kind, job_id)
            await asyncio.to_thread(lose, entry, job_id)
        raise


def lose(entry: Travelling, job_id: str) -> None:
    """Record the job interrupted (``entry.lost``); a failure to is logged, not raised."""
    try:
        entry.lost(job_id)
    except Exception:  # logged: the recovery must go on with the next job
        log.exception("%s job %s could not be recorded interrupted", entry.kind, job_id)


async def recovery(info: str, heartbeat_s: float, once: Callable[[], Awaitable[int]]) -> None:
    """Every ``heartbeat_s``, one replica at a time (the advisory lock ``LOCK_KEY`` on a
    connection of its own to ``info``): ``once()``, the jobs of silent workers."""
    connection: psycopg.AsyncConnection[Any] | None = None
    try:
        while True:
            await asyncio.sleep(heartbeat_s)
            try:
                if connection is None or connection.closed:
                    connection = await psycopg.AsyncConnection.connect(info, autocommit=True)
                cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                locked = await cursor.fetchone()
                if not locked or not locked[0]:
                    continue
                try:
                    await once()
                finally:
                    await connection.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
            except (ProcrastinateException, psycopg.Error):
                log.warning("job queue: the recovery failed; trying again", exc_info=True)
                if connection is not None:
                    await connection.close()
                connection = None
    finally:
        if connection is not None:
            await connection.close()


async def recover_stalled(
    manager: JobManager, lease_s: float, by_task: Mapping[str, Travelling]
) -> int:
    """Queue again (or record lost) the jobs of ``by_task``'s kinds (by task name) whose
    worker has been silent for ``lease_s``; returns how many were found."""
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=lease_s)
    found = 0
    for queued in stalled:
        entry = by_task.get(queued.task_name)
        if entry is None:
            continue
        found += 1
        job_id = str(queued.task_kwargs.get("job_id"))
        if queued.attempts < entry.retries:
            await manager.retry_job(queued)
            log.warning(
                "%s job %s: its worker went silent; queued again (retry %d of %d)",
                entry.kind,
                job_id,
                queued.attempts + 1,
                entry.retries,
            )
        else:
            await manager.finish_job(queued, status=Status.FAILED, delete_job=True)
            await asyncio.to_thread(lose, entry, job_id)
            log.warning("%s job %s: its worker went silent, no retry left", entry.kind, job_id)
    return found
