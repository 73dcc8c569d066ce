"""The generic job layer: the queue bound per kind, places reserved before work, cleanup on
every outcome (done, failed, crashed, stopped, cancelled at shutdown, refused), outcomes
recorded by ``record_outcome``."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest

from service.errors import BusyError, InvalidInputError
from service.jobs import INTERNAL_ERROR, Job, JobStopped, LocalExecutor, record_outcome


def _executor(worker: Any, **options: Any) -> LocalExecutor:
    executor = LocalExecutor()
    executor.register("k", worker, **options)
    return executor


def test_a_full_kind_refuses_and_frees_its_place_when_a_job_ends() -> None:
    release = threading.Event()
    ran: list[str] = []

    def worker(job: Job) -> None:
        release.wait(10)
        ran.append(job.id)

    executor = _executor(worker, max_pending=1, retry_after_s=9)
    cleaned: list[str] = []
    first = executor.submit(Job("k", "a"), cleanup=lambda: cleaned.append("a"))
    with pytest.raises(BusyError) as busy:
        executor.reserve("k")
    assert busy.value.retry_after_s == 9
    with pytest.raises(BusyError):
        executor.submit(Job("k", "b"), cleanup=lambda: cleaned.append("b"))
    assert cleaned == ["b"]  # refused: its cleanup ran at once
    release.set()
    first.result(timeout=10)
    assert cleaned == ["b", "a"] and executor.pending("k") == 0
    executor.submit(Job("k", "c")).result(timeout=10)  # room again at once
    assert ran == ["a", "c"]
    executor.shutdown()


def test_a_reserved_place_is_taken_over_and_released_once() -> None:
    executor = _executor(lambda job: None, max_pending=1)
    place = executor.reserve("k")
    assert executor.pending("k") == 1
    executor.submit(Job("k", "a"), place).result(timeout=10)
    assert place.taken and executor.pending("k") == 0
    place.release()  # a second release does nothing
    assert executor.pending("k") == 0
    executor.shutdown()


@pytest.mark.parametrize("error", [InvalidInputError("bad"), RuntimeError("bug"), JobStopped()])
def test_cleanup_runs_whatever_the_worker_raises(error: BaseException) -> None:
    def worker(job: Job) -> None:
        raise error

    executor = _executor(worker)
    cleaned: list[int] = []
    future = executor.submit(Job("k", "a"), cleanup=lambda: cleaned.append(1))
    with contextlib.suppress(InvalidInputError, RuntimeError):  # the worker's own error
        future.result(timeout=10)
    assert cleaned == [1] and executor.pending("k") == 0
    executor.shutdown()


def test_shutdown_cancels_queued_jobs_and_cleans_them_up() -> None:
    started, release = threading.Event(), threading.Event()

    def worker(job: Job) -> None:
        started.set()
        release.wait(10)

    executor = _executor(worker, max_pending=3)
    cleaned: list[str] = []
    running = executor.submit(Job("k", "a"), cleanup=lambda: cleaned.append("a"))
    started.wait(10)
    queued = executor.submit(Job("k", "b"), cleanup=lambda: cleaned.append("b"))
    executor.shutdown()
    assert queued.cancelled() and cleaned == ["b"]
    release.set()
    running.result(timeout=10)
    assert sorted(cleaned) == ["a", "b"] and executor.pending("k") == 0


def test_kinds_run_in_pools_of_their_own() -> None:
    hold = threading.Event()
    executor = LocalExecutor()
    executor.register("slow", lambda job: hold.wait(10))
    executor.register("quick", lambda job: None)
    executor.submit(Job("slow", "a"))
    executor.submit(Job("quick", "b")).result(timeout=5)  # not behind the slow one
    hold.set()
    executor.shutdown()
    with pytest.raises(ValueError, match="registered already"):
        executor.register("quick", lambda job: None)
    with pytest.raises(KeyError):
        executor.reserve("unknown")


def test_record_outcome() -> None:
    job = Job("k", "a", {"secret": "1.2.3"})
    assert "1.2.3" not in repr(job)
    seen: list[tuple[str, Any, Any]] = []

    def record(status: str, result: Any, error: str | None) -> None:
        seen.append((status, result, error))

    record_outcome(job, lambda: {"n": 1}, record)
    record_outcome(job, lambda: (_ for _ in ()).throw(InvalidInputError("why")), record)
    record_outcome(job, lambda: 1 / 0, record)
    assert seen == [
        ("done", {"n": 1}, None),
        ("failed", None, "why"),
        ("failed", None, INTERNAL_ERROR),
    ]
    with pytest.raises(JobStopped):
        record_outcome(job, lambda: (_ for _ in ()).throw(JobStopped()), record)


def test_a_group_runs_its_jobs_in_turn_in_one_place() -> None:
    ran: list[str] = []

    def worker(job: Job) -> None:
        if job.id == "b":
            raise JobStopped()  # the next job of the group still runs
        ran.append(job.id)

    executor = _executor(worker, max_pending=1)
    cleaned: list[int] = []
    jobs = [Job("k", name) for name in "abc"]
    assert not executor.travels(jobs[0])
    executor.submit_group(jobs, cleanup=lambda: cleaned.append(1)).result(timeout=10)
    assert ran == ["a", "c"] and cleaned == [1] and executor.pending("k") == 0
    with pytest.raises(ValueError, match="one kind"):
        executor.submit_group([Job("k", "a"), Job("other", "b")])
    executor.shutdown()
