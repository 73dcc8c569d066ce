"""Micro-batching: concurrent calls share batches, results return to their callers in order."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.errors import ModelLoadError
from service.models.base import ModelInfo
from service.models.batching import MicroBatcher
from service.pipeline.params import DecisionParams, PostprocessParams


class Doubler:
    """A fake backend: probabilities = 2 x input, remembers each batch it was given."""

    info = ModelInfo("fake-cxr", "0", "unet", "cxr")
    postprocess = PostprocessParams()
    decision = DecisionParams.a_priori("cxr")
    provider = "test"
    precision = "fp32"

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[int] = []
        self.fail = fail

    def prepare(self, frame, units):
        return frame

    def infer(self, inputs):
        if self.fail:
            raise RuntimeError("boom")
        self.batches.append(len(inputs))
        return [2 * x for x in inputs]


def call_concurrently(batcher: MicroBatcher, n: int) -> list[list[np.ndarray]]:
    results: list[list[np.ndarray]] = [[] for _ in range(n)]
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = batcher.infer([np.full((1, 2, 2), i, np.float32), np.full((1, 2, 2), -i)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_calls_are_batched_and_split_back_in_order():
    backend = Doubler()
    batcher = MicroBatcher(backend, window_ms=200, max_batch=64)
    results = call_concurrently(batcher, 8)
    batcher.close()
    for i, (a, b) in enumerate(results):
        assert float(a[0, 0, 0]) == 2 * i and float(b[0, 0, 0]) == -2 * i
    assert sum(backend.batches) == 16
    assert len(backend.batches) < 8


def test_max_batch_bounds_each_batch():
    backend = Doubler()
    batcher = MicroBatcher(backend, window_ms=200, max_batch=4)
    call_concurrently(batcher, 6)
    batcher.close()
    assert sum(backend.batches) == 12
    # requests are never split: a batch stops growing at 4 inputs, overshooting by < 2
    assert max(backend.batches) <= 5


def test_errors_reach_every_caller():
    batcher = MicroBatcher(Doubler(fail=True), window_ms=1, max_batch=8)
    with pytest.raises(RuntimeError, match="boom"):
        batcher.infer([np.zeros((1, 2, 2), np.float32)])
    batcher.close()


class WarmDoubler(Doubler):
    """Records the thread that warmed it up and the threads that ran it."""

    def __init__(self) -> None:
        super().__init__()
        self.warm_thread: str | None = None
        self.run_threads: set[str] = set()

    def warm_up(self) -> None:
        self.warm_thread = threading.current_thread().name

    def infer(self, inputs):
        self.run_threads.add(threading.current_thread().name)
        return super().infer(inputs)


def test_warm_up_runs_in_the_batching_thread_before_the_first_call() -> None:
    backend = WarmDoubler()
    batcher = MicroBatcher(backend, window_ms=0, max_batch=8)
    try:
        assert backend.warm_thread == "batch-fake-cxr"  # done before the constructor returned
        call_concurrently(batcher, 3)
        assert backend.run_threads == {"batch-fake-cxr"}
    finally:
        batcher.close()


class BrokenWarmUp(Doubler):
    def warm_up(self) -> None:
        raise RuntimeError("CUDA out of memory")


def test_a_failed_warm_up_is_a_load_error_not_a_hang() -> None:
    with pytest.raises(ModelLoadError, match="warm-up failed: CUDA out of memory"):
        MicroBatcher(BrokenWarmUp(), window_ms=0, max_batch=8)
