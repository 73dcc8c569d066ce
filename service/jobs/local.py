"""The in-process executor (:class:`LocalExecutor`): one thread pool per job kind, a bounded
number of jobs pending per kind (the interface and its rules: :mod:`service.jobs.executor`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from service.errors import BusyError
from service.jobs.executor import Job, JobStopped, Loader, Reservation, Worker

log = logging.getLogger("service.jobs.executor")


def once(action: Callable[[], None] | None) -> Callable[[], None]:
    """``action`` wrapped to run at most once, from any thread (None: a no-op)."""
    lock = threading.Lock()
    done = False

    def run() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        if action is not None:
            action()

    return run


@dataclass
class _Kind:
    worker: Worker
    pool: ThreadPoolExecutor
    max_pending: int
    retry_after_s: int
    busy: str
    pending: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalExecutor:
    """Jobs in this process: one thread pool per kind, a bounded number pending per kind."""

    def __init__(self) -> None:
        self._kinds: dict[str, _Kind] = {}

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
        """Run jobs of ``kind`` with ``worker`` in ``workers`` threads, at most
        ``max_pending`` queued or running; ``busy_message`` is the BusyError's text.
        ``retries``, ``load`` and ``lost`` are unused: in process no job travels, and a job
        of a crashed process is recorded interrupted by the leases."""
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is registered already")
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be at least 1")
        pool = ThreadPoolExecutor(workers, thread_name_prefix=f"lungseg-{kind}")
        busy = busy_message or f"{max_pending} {kind} jobs are queued or running; retry later"
        self._kinds[kind] = _Kind(worker, pool, max_pending, retry_after_s, busy)

    def _kind(self, kind: str) -> _Kind:
        found = self._kinds.get(kind)
        if found is None:
            raise KeyError(f"no worker registered for job kind {kind!r}")
        return found

    def start(self) -> None:
        """Nothing to start: the pools take jobs as soon as they are registered."""

    def travels(self, job: Job) -> bool:
        return False

    def pending(self, kind: str) -> int:
        """Jobs of ``kind`` queued or running (reserved places included)."""
        return self._kind(kind).pending

    def reserve(self, kind: str) -> Reservation:
        entry = self._kind(kind)
        with entry.lock:
            if entry.pending < entry.max_pending:
                entry.pending += 1
                return Reservation(lambda: self._free(entry))
        raise BusyError(entry.busy, entry.retry_after_s)

    @staticmethod
    def _free(entry: _Kind) -> None:
        with entry.lock:
            entry.pending -= 1

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
        """The jobs run one after another in one thread of their kind's pool, in one place
        (a job that stops does not hold the next back; one that raises ends the group)."""
        tidy = once(cleanup)
        if not jobs or len({job.kind for job in jobs}) != 1:
            tidy()
            raise ValueError("a group is one or more jobs of one kind")
        try:
            place = reservation or self.reserve(jobs[0].kind)
        except BusyError:
            tidy()
            raise
        entry = self._kind(jobs[0].kind)

        def finish() -> None:
            try:
                tidy()
            finally:
                place.release()

        def run() -> None:
            try:
                for job in jobs:
                    try:
                        entry.worker(job)
                    except JobStopped:
                        log.info("%s job %s stopped: no longer active", job.kind, job.id)
            finally:
                finish()  # before the future completes: its waiters find the place free

        try:
            future = entry.pool.submit(run)
        except BaseException:
            finish()
            raise
        place.taken = True
        future.add_done_callback(lambda done: finish() if done.cancelled() else None)
        return future

    def shutdown(self, kinds: Iterable[str] | None = None) -> None:
        """Queued jobs are cancelled (their places and cleanup freed); running ones finish in
        their threads (the stores record them interrupted when the process ends first)."""
        for kind in list(kinds) if kinds is not None else list(self._kinds):
            entry = self._kinds.get(kind)
            if entry is not None:
                entry.pool.shutdown(wait=False, cancel_futures=True)
