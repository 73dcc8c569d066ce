"""Background jobs: a kind, an id and params in; a worker per kind that records its outcome.

The interface (what the routers and the runners of each kind use)::

    executor.register(kind, worker, workers=1, max_pending=4, retry_after_s=30)
    place = executor.reserve(kind)      # before an upload is read: BusyError (503) when full
    future = executor.submit(Job(kind, job_id, params, payload), place, cleanup)
    executor.shutdown()                 # queued jobs cancelled: their places and cleanup freed

* A **job** (:class:`Job`) is its ``kind`` (``"benchmark"``, ``"volume"``), its ``id`` (the
  row its store created, ``queued``, before it was submitted), ``params`` (JSON: everything a
  worker anywhere needs) and an optional ``payload``: data that exists only in this process (an
  assembled volume, an extracted set), never persisted.
* A **worker** (``Worker = Callable[[Job], None]``, one per kind, registered once with its
  dependencies bound: the segmenter, the store, the PACS settings) reads the params, runs, and
  writes status, progress, result and artifacts to the kind's store itself
  (:func:`record_outcome`: ``running``, then ``done`` or ``failed``). It stops early, raising
  :class:`JobStopped`, when its store says the job is no longer queued or running.
* The **queue bound**: at most ``max_pending`` jobs of a kind are queued or running in this
  executor. A place is *reserved* before the request's upload is read (so a full queue refuses
  with 503 + Retry-After at once, before any byte is held); ``submit`` takes it over
  (``Reservation.taken``) and frees it when the job ends, however it ends.
* **Cleanup** (removing an extracted upload): ``cleanup`` runs exactly once on every outcome:
  done, failed, crashed, cancelled at shutdown, or ``submit`` itself failing.
* **Leases** are the stores' (``service.benchmark.jobstore``): a job's row is created with this
  worker as its owner, a ``Heartbeat`` renews it, ``abandon()`` at shutdown records unfinished
  jobs ``interrupted``, and a crashed worker's jobs are recorded ``interrupted`` by the next
  worker that reads them. The executor knows nothing about them. (A job that travels, below,
  is owned by the shared queue instead: the queue's recovery decides its fate.)

:class:`LocalExecutor` runs each kind in its own thread pool (``workers`` threads), so a long
benchmark never holds a volume job back.

**Jobs shared by replicas** (:class:`service.jobs.queue.ProcrastinateExecutor`, a procrastinate
queue in the PostgreSQL job store, chosen by ``LUNGSEG_JOB_QUEUE``): the same interface, and
the runners never know which executor they were given. What it adds to the protocol, which
:class:`LocalExecutor` accepts and has no use for:

* ``register(..., retries=, load=, lost=)``: a kind that registers ``load`` (``job id ->
  params``, None when the job is no longer active) may *travel*: its jobs without a payload go
  to the shared queue with their id only (the params, which may hold identifiers, stay in the
  store and never reach the queue's rows or log lines), and any replica's worker runs them.
  ``retries``: how many times such a job is run again when the replica running it died or
  stopped; after that ``lost(job_id)`` records it interrupted.
* ``travels(job)``: whether ``submit`` would send the job to the shared queue (then its row is
  created owned by the queue, not by this worker's lease: see ``service.benchmark.jobstore``).
* ``submit_group(jobs, reservation, cleanup)``: several jobs in one place (the chunks of a
  benchmark run), the future resolving once every one ended; in process they run one after
  another in one thread.
* ``start()``: after the kinds are registered (the shared queue's workers start consuming).
* ``Job.stop``: set when the executor gives the job up (a shutdown handing it back to the
  queue); the worker stops at its next check (raising :class:`JobStopped`) and records nothing.

A job with a ``payload`` (an upload assembled in this process's memory: uploads are never
written to disk, nor staged in the database) never travels: it runs in this process, leased
as above.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from service.errors import LungsegError

log = logging.getLogger(__name__)
T = TypeVar("T")
INTERNAL_ERROR = "internal error; see the service log"
QUEUE_ERROR = "the job could not be queued; see the service log"


@dataclass(frozen=True, repr=False)
class Job:
    """One unit of background work (see the module docstring)."""

    kind: str
    id: str
    params: Mapping[str, Any] = field(default_factory=dict)
    payload: Any = None
    stop: threading.Event = field(default_factory=threading.Event, compare=False)

    def __repr__(self) -> str:
        """No params (they may hold identifiers): the kind and the id."""
        return f"Job({self.kind}, {self.id})"


Worker = Callable[[Job], None]
Loader = Callable[[str], Mapping[str, Any] | None]
"""Reads a travelling job's params by its id (None: the job is no longer queued or running)."""


class JobStopped(Exception):
    """Raised by a worker whose job is no longer queued or running in its store (recorded
    interrupted by another worker, or expired): it stops without recording anything."""


class Reservation:
    """A place in a kind's queue; ``release`` frees it once (later calls do nothing).
    ``taken`` is set when a submitted job owns it (the job frees it when it ends)."""

    def __init__(self, free: Callable[[], None]) -> None:
        self._free = free
        self._lock = threading.Lock()
        self._held = True
        self.taken = False

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._free()


class Executor(Protocol):
    """What the runners use; :class:`LocalExecutor` in process, a task queue across them."""

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
        """Run jobs of ``kind`` with ``worker`` (each runner registers its kind once);
        ``retries``, ``load`` and ``lost`` are for jobs that travel (module docstring)."""
        ...

    def start(self) -> None:
        """Start running jobs (after every kind is registered)."""
        ...

    def travels(self, job: Job) -> bool:
        """Whether ``submit`` would run ``job`` anywhere but in this process."""
        ...

    def reserve(self, kind: str) -> Reservation:
        """A place in ``kind``'s queue. Raises BusyError when none is free."""
        ...

    def submit(
        self,
        job: Job,
        reservation: Reservation | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> Future[None]:
        """Run ``job`` by its kind's worker in ``reservation``'s place (one is taken when none
        is given); ``cleanup`` runs once on every outcome. Raises BusyError when no place is
        free (``cleanup`` has run)."""
        ...

    def submit_group(
        self,
        jobs: Sequence[Job],
        reservation: Reservation | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> Future[None]:
        """Run ``jobs`` (of one kind) in one place; the future resolves when all ended."""
        ...

    def shutdown(self, kinds: Iterable[str] | None = None) -> None:
        """Stop taking jobs of ``kinds`` (all by default); queued ones are cancelled."""
        ...


def record_outcome(
    job: Job,
    work: Callable[[], T],
    record: Callable[[str, T | None, str | None], None],
) -> None:
    """Run ``work`` and record its outcome with ``record(status, result, error)``: ``done``
    with its result; ``failed`` with the message of a domain error (safe to show) or, for a
    bug, :data:`INTERNAL_ERROR` (its traceback logged). Messages are not logged: they may
    quote identifiers (a series UID). :class:`JobStopped` passes through."""
    try:
        result = work()
    except (JobStopped, KeyboardInterrupt):
        raise
    except LungsegError as err:
        kind = next(c.__name__ for c in type(err).__mro__ if not c.__name__.startswith("_"))
        log.warning("%s job %s failed: %s", job.kind, job.id, kind)
        record("failed", None, str(err))
    except Exception:  # a worker thread must record any failure instead of dying silently
        log.exception("%s job %s crashed", job.kind, job.id)
        record("failed", None, INTERNAL_ERROR)
    else:
        record("done", result, None)
