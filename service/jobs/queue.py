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
  :class:`~service.jobs.executor.LocalExecutor` this executor holds: patient data is never
  written to disk by the service, nor staged in the database to travel.

The **queue bound** is this replica's: ``reserve`` counts the jobs posted to this replica
(payload or not) that have not ended, in memory, before any byte of an upload is read (503 +
Retry-After when ``max_pending`` are). A travelling job keeps its place on the replica that
took the request until it ended wherever it ran; across N replicas at most N x
``max_pending`` jobs of a kind are queued or running.

**A replica that dies or stops**: each worker renews its procrastinate heartbeat every
``heartbeat_s``. Every replica checks every ``heartbeat_s`` (one at a time: a PostgreSQL
advisory lock) for jobs left ``doing`` by workers silent for ``lease_s`` (killed, frozen,
cut off): such a job is queued again while it has retries left (``retries`` per kind), else
``lost(job_id)`` records it interrupted. A replica shutting down hands its running
travelling jobs back the same way at once (``Job.stop`` is set: the job's thread stops at its
next check and records nothing). A travelling job's row is owned by the queue, not leased by
one replica (``service.benchmark.jobstore.QUEUE_OWNER``): this recovery decides its fate.

The returned futures resolve when the queued jobs are gone from procrastinate's table (the
workers delete them when they end), checked every ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import procrastinate
import psycopg
from procrastinate.exceptions import ProcrastinateException
from procrastinate.job_context import JobContext
from procrastinate.jobs import Job as QueuedJob
from procrastinate.jobs import Status
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.schema import SchemaManager
from sqlalchemy.engine import make_url

from service.errors import BusyError
from service.jobs.executor import (
    Job,
    JobStopped,
    Loader,
    LocalExecutor,
    Reservation,
    Worker,
    _once,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
QUEUE_PREFIX = "lungseg."
LOCK_KEY = 0x6C756E67  # advisory lock of the schema's creation and of the stalled-job recovery
ACTIVE_QUERY = (
    "SELECT id FROM procrastinate_jobs WHERE id = ANY(%(ids)s) AND status IN ('todo', 'doing')"
)


def conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL
    (``postgresql+psycopg://user@/db?host=/socket`` -> ``postgresql://user@/db?host=/socket``).

    Raises:
        ValueError: not a PostgreSQL URL.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("a shared job queue needs a PostgreSQL LUNGSEG_DATABASE_URL")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def apply_schema(info: str) -> bool:
    """Create procrastinate's tables, types and functions unless the database has them (one
    replica at a time: an advisory lock); returns whether they were created."""
    with psycopg.connect(info) as connection:  # one transaction, committed on exit
        connection.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        found = connection.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if found is not None and found[0] is not None:
            return False
        connection.execute(SchemaManager.get_schema())  # no parameters: several statements
    log.info("job queue: procrastinate's schema created")
    return True


class _HandBack(BaseRetryStrategy):
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
class _Travelling:
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


@dataclass
class _Group:
    ids: set[int]
    future: Future[None]
    finish: Callable[[], None]
    kind: str


@dataclass
class _Loop:
    loop: asyncio.AbstractEventLoop
    closing: asyncio.Event
    workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class ProcrastinateExecutor:
    """Jobs shared by the replicas over one PostgreSQL database (see the module docstring).

    ``name`` names this replica's workers in procrastinate's table; ``grace_s``: how long a
    shutdown waits for running travelling jobs before handing them back (0: at once).
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
        self._kinds: dict[str, _Travelling] = {}
        self._by_task: dict[str, _Travelling] = {}
        self._registered: set[str] = set()
        self._stopped: set[str] = set()
        self._groups: dict[int, _Group] = {}
        self._lock = threading.Lock()
        self._run: _Loop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._consume = True

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
        if self._run is not None:
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
        entry = _Travelling(kind, worker, workers, max(0, retries), load, lost)

        async def run(context: JobContext, job_id: str) -> None:
            await self._execute(entry, context, job_id)

        entry.task = self._app.task(
            name=entry.queue, queue=entry.queue, pass_context=True, retry=_HandBack(entry.retries)
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
        if self._thread is not None:
            return
        self._consume = consume
        apply_schema(self._conninfo)
        self._thread = threading.Thread(target=self._main, name="lungseg-job-queue", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._failure is not None:
            raise self._failure
        if self._run is None:
            raise RuntimeError("the job queue did not start within 60 s")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as err:  # reported to start(), or logged once running
            if not self._ready.is_set():
                self._failure = err
            else:
                log.exception("job queue: the event loop ended")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        run = _Loop(asyncio.get_running_loop(), asyncio.Event())
        async with self._app.open_async():
            if self._consume:
                for kind in self._kinds:
                    run.workers[kind] = asyncio.create_task(self._consume_kind(kind, run))
            side = [asyncio.create_task(self._watch(), name="lungseg-queue-watch")]
            if self._consume:
                side.append(asyncio.create_task(self._recover(), name="lungseg-queue-recovery"))
            self._run = run
            self._ready.set()
            await run.closing.wait()
            for task in run.workers.values():
                task.cancel()  # a graceful stop: running jobs are handed back
            await asyncio.gather(*run.workers.values(), return_exceptions=True)
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)

    async def _consume_kind(self, kind: str, run: _Loop) -> None:
        """The kind's procrastinate worker, started again after a database failure."""
        entry = self._kinds[kind]
        while not run.closing.is_set():
            try:
                await self._app.run_worker_async(
                    queues=[entry.queue],
                    name=f"lungseg-{kind}",
                    concurrency=entry.workers,
                    wait=True,
                    fetch_job_polling_interval=min(1.0, self.heartbeat_s),
                    abort_job_polling_interval=self.heartbeat_s,
                    shutdown_graceful_timeout=self.grace_s,
                    listen_notify=True,
                    delete_jobs="always",
                    install_signal_handlers=False,
                    update_heartbeat_interval=self.heartbeat_s,
                    stalled_worker_timeout=self.lease_s,
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the database went away: try again after a heartbeat
                log.warning(
                    "job queue: the %s worker stopped; starting it again", kind, exc_info=True
                )
            if not run.closing.is_set():
                await asyncio.sleep(self.heartbeat_s)

    # -- running a travelling job ----------------------------------------------------------

    async def _execute(self, entry: _Travelling, context: JobContext, job_id: str) -> None:
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
                self._lose(entry, job_id)
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
                await asyncio.to_thread(self._lose, entry, job_id)
            raise

    @staticmethod
    def _lose(entry: _Travelling, job_id: str) -> None:
        try:
            entry.lost(job_id)
        except Exception:  # logged: the recovery must go on with the next job
            log.exception("%s job %s could not be recorded interrupted", entry.kind, job_id)

    # -- the watch on this replica's jobs, the recovery ------------------------------------

    async def _watch(self) -> None:
        """Resolve the futures of this replica's travelling jobs once their jobs are gone."""
        while True:
            await asyncio.sleep(self.poll_s)
            with self._lock:
                ids = sorted({i for group in self._groups.values() for i in group.ids})
            if not ids:
                continue
            try:
                rows = await self._app.connector.execute_query_all_async(ACTIVE_QUERY, ids=ids)
            except (ProcrastinateException, psycopg.Error):
                log.warning("job queue: the jobs' status could not be read", exc_info=True)
                continue
            active = {int(row["id"]) for row in rows}
            ended: list[_Group] = []
            with self._lock:
                for key, group in list(self._groups.items()):
                    group.ids &= active
                    if not group.ids:
                        ended.append(self._groups.pop(key))
            for group in ended:
                try:
                    group.finish()
                finally:
                    group.future.set_result(None)

    async def _recover(self) -> None:
        """Every ``heartbeat_s``, one replica at a time: the jobs of silent workers."""
        connection: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                await asyncio.sleep(self.heartbeat_s)
                try:
                    if connection is None or connection.closed:
                        connection = await psycopg.AsyncConnection.connect(
                            self._conninfo, autocommit=True
                        )
                    cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                    locked = await cursor.fetchone()
                    if not locked or not locked[0]:
                        continue
                    try:
                        await self.recover_once()
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

    async def recover_once(self) -> int:
        """Queue again (or record lost) the jobs whose worker has been silent for
        ``lease_s``; returns how many were found."""
        manager = self._app.job_manager
        stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=self.lease_s)
        found = 0
        for queued in stalled:
            entry = self._by_task.get(queued.task_name)
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
                await asyncio.to_thread(self._lose, entry, job_id)
                log.warning("%s job %s: its worker went silent, no retry left", entry.kind, job_id)
        return found

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
        tidy = _once(cleanup)
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
            ids = self._call(
                entry.task.batch_defer_async(*[{"job_id": job.id} for job in jobs]),
                self.defer_timeout_s,
            )
        except BaseException:
            finish()
            raise
        place.taken = True
        future: Future[None] = Future()
        with self._lock:
            self._groups[min(ids)] = _Group(set(ids), future, finish, kind)
        return future

    def _call(self, work: Awaitable[T], timeout_s: float) -> T:
        run = self._run
        if run is None:
            raise RuntimeError("the job queue is not started")

        async def wrapped() -> T:
            return await work

        coroutine: Coroutine[Any, Any, T] = wrapped()
        return asyncio.run_coroutine_threadsafe(coroutine, run.loop).result(timeout_s)

    def shutdown(self, kinds: Iterable[str] | None = None) -> None:
        """Stop taking jobs of ``kinds`` (all by default): the local queued ones are
        cancelled, the kinds' workers stop (their running jobs handed back to the queue after
        ``grace_s``); once every kind is stopped the loop ends and the futures still waiting
        are cancelled (their jobs stay queued for the other replicas)."""
        names = list(kinds) if kinds is not None else sorted(self._registered)
        self._local.shutdown(names)
        run = self._run
        for kind in names:
            if kind in self._stopped:
                continue
            self._stopped.add(kind)
            if run is not None and kind in run.workers:
                worker = run.workers.pop(kind)
                stopping = asyncio.run_coroutine_threadsafe(self._stop(worker), run.loop)
                try:
                    stopping.result(self.grace_s + 30)
                except TimeoutError:
                    log.warning("job queue: the %s worker did not stop in time", kind)
        if kinds is None or self._registered <= self._stopped:
            self.close()

    @staticmethod
    async def _stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def close(self) -> None:
        """End the loop (and its workers) and cancel the futures still waiting."""
        run, thread = self._run, self._thread
        if run is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                run.loop.call_soon_threadsafe(run.closing.set)
            thread.join(self.grace_s + 30)
        self._run = None
        with self._lock:
            groups, self._groups = list(self._groups.values()), {}
        for group in groups:
            try:
                group.finish()
            finally:
                group.future.cancel()
