"""Jobs shared by the replicas: a procrastinate queue in the PostgreSQL job store.

:class:`ProcrastinateExecutor` implements :class:`service.jobs.executor.Executor` over
`procrastinate <https://procrastinate.readthedocs.io>`_ (PostgreSQL only: its tables live in
the job store's database, ``LUNGSEG_DATABASE_URL``, nothing else is needed beside it)::

    executor = ProcrastinateExecutor(url, heartbeat_s=10, lease_s=60)
    executor.register(kind, worker, workers=1, max_pending=4, retries=2, load=..., lost=...)
    executor.start()                 # the schema (once per database), a worker per kind
    place = executor.reserve(kind)   # this replica's bound, before an upload is read
    future = executor.submit(job, place)             # or submit_group(jobs, place)
    executor.shutdown()              # running jobs handed back to the queue

What travels and what stays:

* A job **without a payload** of a kind registered with ``load`` and ``lost`` goes to the
  shared queue ``lungseg.<kind>`` as its id only (``{"job_id": ...}``: the params stay in the
  kind's store, so no identifier reaches procrastinate's rows or its log lines). Every replica
  runs a procrastinate worker per kind (``workers`` at once, like the local pools), so a job
  posted to a busy replica is run by an idle one. The worker reads the params with ``load``
  (None: the job ended meanwhile, skipped) and runs the kind's worker unchanged.
* A job **with a payload** (an upload assembled in this process's memory) runs here, in the
  :class:`~service.jobs.local.LocalExecutor` this executor holds: patient data is never
  written to disk by the service, nor staged in the database to travel.

The **queue bound** is this replica's: ``reserve`` counts the jobs posted to this replica
(payload or not) that have not ended, in memory, before any byte of an upload is read (503 +
Retry-After when ``max_pending`` are). A travelling job keeps its place on the replica that
took the request until it ended wherever it ran; across N replicas at most N x
``max_pending`` jobs of a kind are queued or running.

**A replica that dies or stops**: its workers' heartbeats lapse after ``lease_s`` and another
replica queues their jobs again while they have retries left, else records them interrupted;
a replica shutting down hands its running travelling jobs back at once (the rules:
:mod:`service.jobs.queue_leases`, which also runs them).

The returned futures resolve when the queued jobs are gone from procrastinate's table (the
workers delete them when they end), checked every ``poll_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from functools import partial

import procrastinate
from procrastinate.job_context import JobContext

from service.errors import BusyError
from service.jobs.executor import Job, Loader, Reservation, Worker
from service.jobs.local import LocalExecutor, once
from service.jobs.queue_groups import Posted
from service.jobs.queue_leases import (
    HandBack,
    Travelling,
    execute,
    recover_stalled,
    recovery,
)
from service.jobs.queue_leases import consume as consume_kind
from service.jobs.queue_loop import QueueLoop, SideTask, WorkerTask
from service.jobs.queue_schema import ACTIVE_QUERY, LOCK_KEY, QUEUE_PREFIX, apply_schema, conninfo

__all__ = [
    "ACTIVE_QUERY",
    "LOCK_KEY",
    "QUEUE_PREFIX",
    "ProcrastinateExecutor",
    "apply_schema",
    "conninfo",
]

log = logging.getLogger(__name__)


class ProcrastinateExecutor:
    """Jobs shared by the replicas over one PostgreSQL database (see the module docstring).

    ``heartbeat_s`` / ``lease_s``: how often a running travelling job is renewed, and how long
    a silent one waits before another replica runs it again; ``poll_s``: the workers' poll of
    the queue; ``grace_s``: how long a shutdown waits for running travelling jobs before
    handing them back (0: at once); ``defer_timeout_s``: the longest wait to post a job;
    ``pool_size``: the connections of the queue's pool.
    """

    def __init__(
        self,
        url: str,
        *,
        heartbeat_s: float = 10.0,
        lease_s: float = 60.0,
        poll_s: float = 0.5,
        grace_s: float = 0.0,
        defer_timeout_s: float = 30.0,
        pool_size: int = 8,
    ) -> None:
        if lease_s <= heartbeat_s:
            raise ValueError("the lease must be longer than the heartbeat")
        self._conninfo = conninfo(url)
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.grace_s = grace_s
        self.defer_timeout_s = defer_timeout_s
        connector = procrastinate.PsycopgConnector(
            conninfo=self._conninfo, min_size=1, max_size=pool_size
        )
        self._app = procrastinate.App(connector=connector)
        self._local = LocalExecutor()
        self._kinds: dict[str, Travelling] = {}
        self._by_task: dict[str, Travelling] = {}
        self._registered: set[str] = set()
        self._stopped: set[str] = set()
        self._posted = Posted()
        self._loop = QueueLoop(self._app)

    # -- registration and start ------------------------------------------------------------

    def register(
        self,
        kind: str,
        worker: Worker,
        *,
        workers: int = 1,
        max_pending: int = 4,
        retry_after_s: int = 30,
        busy_message: str | None = None,
        retries: int = 0,
        load: Loader | None = None,
        lost: Callable[[str], None] | None = None,
    ) -> None:
        """As :meth:`LocalExecutor.register`; with ``load`` and ``lost`` the kind's jobs
        without a payload travel (the module docstring)."""
        if self._loop.running:
            raise RuntimeError("register every kind before start()")
        self._local.register(
            kind,
            worker,
            workers=workers,
            max_pending=max_pending,
            retry_after_s=retry_after_s,
            busy_message=busy_message,
        )
        self._registered.add(kind)
        if load is None or lost is None:
            return  # its jobs always run here
        entry = Travelling(kind, worker, workers, max(0, retries), load, lost)

        async def run(context: JobContext, job_id: str) -> None:
            await execute(entry, context, job_id)

        entry.task = self._app.task(
            name=entry.queue, queue=entry.queue, pass_context=True, retry=HandBack(entry.retries)
        )(run)
        self._kinds[kind] = entry
        self._by_task[entry.queue] = entry

    def start(self, consume: bool = True) -> None:
        """Create the schema if needed, then run this replica's event loop (in a thread of its
        own): a procrastinate worker per travelling kind (``consume``: False only defers, as
        a test's other replica may), the watch on this replica's jobs, the recovery.

        Raises:
            psycopg.Error, ProcrastinateException: the database cannot be reached.
        """
        if self._loop.started:
            return
        apply_schema(self._conninfo)
        workers: dict[str, WorkerTask] = {}
        side: dict[str, SideTask] = {
            "lungseg-queue-watch": partial(self._posted.watch, self._app.connector, self.poll_s)
        }
        if consume:
            for kind, entry in self._kinds.items():
                workers[kind] = partial(
                    consume_kind,
                    self._app,
                    entry,
                    heartbeat_s=self.heartbeat_s,
                    lease_s=self.lease_s,
                    grace_s=self.grace_s,
                )
            side["lungseg-queue-recovery"] = partial(
                recovery, self._conninfo, self.heartbeat_s, self.recover_once
            )
        self._loop.start(workers, side)

    # -- the recovery ----------------------------------------------------------------------

    async def recover_once(self) -> int:
        """Queue again (or record lost) the jobs whose worker has been silent for
        ``lease_s``; returns how many were found."""
        return await recover_stalled(self._app.job_manager, self.lease_s, self._by_task)

    # -- the Executor interface ------------------------------------------------------------

    def travels(self, job: Job) -> bool:
        return job.payload is None and job.kind in self._kinds

    def pending(self, kind: str) -> int:
        """Jobs of ``kind`` posted to this replica that have not ended (places reserved)."""
        return self._local.pending(kind)

    def reserve(self, kind: str) -> Reservation:
        return self._local.reserve(kind)

    def submit(
        self,
        job: Job,
        reservation: Reservation | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> Future[None]:
        return self.submit_group([job], reservation, cleanup)

    def submit_group(
        self,
        jobs: Sequence[Job],
        reservation: Reservation | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> Future[None]:
        """Payload jobs run here (:class:`LocalExecutor`); the others are deferred together
        to their kind's shared queue (one INSERT), in one place of this replica."""
        travelling = [self.travels(job) for job in jobs]
        if not any(travelling):
            return self._local.submit_group(jobs, reservation, cleanup)
        tidy = once(cleanup)
        if not all(travelling) or len({job.kind for job in jobs}) != 1:
            tidy()
            raise ValueError("a group is jobs of one kind that all travel or all stay")
        kind = jobs[0].kind
        try:
            place = reservation or self.reserve(kind)
        except BusyError:
            tidy()
            raise

        def finish() -> None:
            try:
                tidy()
            finally:
                place.release()

        entry = self._kinds[kind]
        try:
            ids = self._loop.call(
                entry.task.batch_defer_async(*[{"job_id": job.id} for job in jobs]),
                self.defer_timeout_s,
            )
        except BaseException:
            finish()
            raise
        place.taken = True
        return self._posted.add(ids, finish, kind)

    def shutdown(self, kinds: Iterable[str] | None = None) -> None:
        """Stop taking jobs of ``kinds`` (all by default): the local queued ones are
        cancelled, the kinds' workers stop (their running jobs handed back to the queue after
        ``grace_s``); once every kind is stopped the loop ends and the futures still waiting
        are cancelled (their jobs stay queued for the other replicas)."""
        names = list(kinds) if kinds is not None else sorted(self._registered)
        self._local.shutdown(names)
        for kind in names:
            if kind in self._stopped:
                continue
            self._stopped.add(kind)
            try:
                self._loop.stop(kind, self.grace_s + 30)
            except TimeoutError:
                log.warning("job queue: the %s worker did not stop in time", kind)
        if kinds is None or self._registered <= self._stopped:
            self.close()

    def close(self) -> None:
        """End the loop (and its workers) and cancel the futures still waiting."""
        self._loop.close(self.grace_s + 30)
        self._posted.cancel()
