"""Concurrency limits and stage timing of the ``Segmenter``: gates (semaphores) that bound the
inferences and CPU stages running at once, a share of the cores for decoding threads, and the
clock that times each stage of a request (waiting for a gate not counted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

T = TypeVar("T")


def gate(limit: int) -> AbstractContextManager[object]:
    """A semaphore admitting ``limit`` threads at once, or no gate for 0."""
    return threading.BoundedSemaphore(limit) if limit > 0 else nullcontext()


class SharedThreads:
    """``with shared as n``: a share of ``total`` threads, split among the holders at entry."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._holders = 0
        self._lock = threading.Lock()

    def __enter__(self) -> int:
        with self._lock:
            self._holders += 1
            return max(1, self.total // self._holders)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._holders -= 1


class StageClock:
    """Accumulates wall time per stage in milliseconds, from the first call to :meth:`total`."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._start = time.perf_counter()

    def run(self, stage: str, fn: Callable[[], T], within: AbstractContextManager[object]) -> T:
        """Run ``fn`` inside ``within`` (a gate); only the time inside counts."""
        with within:
            begin = time.perf_counter()
            result = fn()
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - begin) * 1000
        return result

    def total(self) -> dict[str, float]:
        """Every stage's milliseconds and ``total`` (wall time since the clock started)."""
        return {**self.ms, "total": (time.perf_counter() - self._start) * 1000}
