"""The shared job queue's event loop: one per replica, in a thread of its own.

:class:`QueueLoop` runs asyncio in a daemon thread with the procrastinate app open, a task per
worker (a travelling kind's procrastinate worker, :func:`service.jobs.queue_leases.consume`) and
side tasks (the watch on this replica's posted jobs, the recovery). The executor's threads call
into it: :meth:`QueueLoop.call` runs a coroutine there (deferring jobs), :meth:`QueueLoop.stop`
cancels one kind's worker (a graceful stop: its running jobs are handed back), and
:meth:`QueueLoop.close` ends the loop (the workers first, then the side tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import procrastinate

log = logging.getLogger("service.jobs.queue")  # the queue's log lines keep one logger name
T = TypeVar("T")
WorkerTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]  # given the closing event
SideTask = Callable[[], Coroutine[Any, Any, None]]


@dataclass
class _Loop:
    loop: asyncio.AbstractEventLoop
    closing: asyncio.Event
    workers: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class QueueLoop:
    """``app``'s event loop in the thread ``name`` (see the module docstring)."""

    def __init__(self, app: procrastinate.App, name: str = "lungseg-job-queue") -> None:
        self._app = app
        self._name = name
        self._run: _Loop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._workers: Mapping[str, WorkerTask] = {}
        self._side: Mapping[str, SideTask] = {}

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called (the loop may have ended since)."""
        return self._thread is not None

    @property
    def running(self) -> bool:
        """Whether the loop runs (started and not closed)."""
        return self._run is not None

    def start(self, workers: Mapping[str, WorkerTask], side: Mapping[str, SideTask]) -> None:
        """Run the loop with a task per worker (by kind) and per side task (by name).

        Raises:
            psycopg.Error, ProcrastinateException: the database cannot be reached.
        """
        self._workers, self._side = dict(workers), dict(side)
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
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
            for kind, worker in self._workers.items():
                run.workers[kind] = asyncio.create_task(worker(run.closing))
            side = [asyncio.create_task(task(), name=name) for name, task in self._side.items()]
            self._run = run
            self._ready.set()
            await run.closing.wait()
            for task in run.workers.values():
                task.cancel()  # a graceful stop: running jobs are handed back
            await asyncio.gather(*run.workers.values(), return_exceptions=True)
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)

    def call(self, work: Awaitable[T], timeout_s: float) -> T:
        """``work``'s result, awaited in the loop (``timeout_s`` at most)."""
        run = self._run
        if run is None:
            raise RuntimeError("the job queue is not started")

        async def wrapped() -> T:
            return await work

        coroutine: Coroutine[Any, Any, T] = wrapped()
        return asyncio.run_coroutine_threadsafe(coroutine, run.loop).result(timeout_s)

    def stop(self, kind: str, timeout_s: float) -> None:
        """Cancel ``kind``'s worker (if it runs) and wait for it, ``timeout_s`` at most.

        Raises:
            TimeoutError: it did not stop in time.
        """
        run = self._run
        if run is not None and kind in run.workers:
            worker = run.workers.pop(kind)
            stopping = asyncio.run_coroutine_threadsafe(self._stop(worker), run.loop)
            stopping.result(timeout_s)

    @staticmethod
    async def _stop(task: asyncio.Task[None]) -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def close(self, timeout_s: float) -> None:
        """End the loop (its workers, then its side tasks), waiting ``timeout_s`` at most."""
        run, thread = self._run, self._thread
        if run is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop ended already
                run.loop.call_soon_threadsafe(run.closing.set)
            thread.join(timeout_s)
        self._run = None
