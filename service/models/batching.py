"""Micro-batching: concurrent ``infer`` calls arriving within a short window run as one batch.

On a GPU one batch of 32 costs little more than one image, so a service under load gains
throughput by waiting a few milliseconds for company. The wrapper keeps the ``Backend``
interface; results go back to each caller in its own order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from service.errors import ModelLoadError
from service.imaging.types import Units
from service.models.base import Backend, Prediction

log = logging.getLogger(__name__)


@dataclass
class _Request:
    inputs: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[Prediction] = field(default_factory=list)
    error: BaseException | None = None


class MicroBatcher:
    """A Backend that gathers calls for up to ``window_ms`` or ``max_batch`` inputs.

    On a GPU every model runs behind one (ONNX Runtime's CUDA provider keeps per-thread state,
    so one thread per model, warmed up at start, serves every request).

    Args:
        backend: the wrapped backend; its inputs must share one shape (ONNX models: the card's).
            Its ``warm_up()``, if any, runs in the batching thread before the constructor returns;
            if it fails the constructor raises ``ModelLoadError``.
        window_ms: how long the first request of a batch waits for others, in milliseconds.
        max_batch: most inputs in one batch.
    """

    def __init__(self, backend: Backend[np.ndarray], window_ms: float, max_batch: int) -> None:
        self.backend = backend
        self.info = backend.info
        self.postprocess = backend.postprocess
        self.decision = backend.decision
        self.provider = backend.provider
        self.precision = backend.precision
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.batch_sizes: Counter[int] = Counter()  # batches run, by size (bounded)
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"batch-{self.info.name}", daemon=True
        )
        self._warm_up_error: Exception | None = None
        self._thread.start()
        self._ready.wait()
        if self._warm_up_error is not None:
            raise ModelLoadError(
                f"{self.info.name}: warm-up failed: {self._warm_up_error}"
            ) from self._warm_up_error

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)  # e.g. ``card`` of an ONNX backend

    def prepare(self, frame: np.ndarray, units: Units) -> np.ndarray:
        return self.backend.prepare(frame, units)

    def infer(self, inputs: list[np.ndarray]) -> list[Prediction]:
        """Queue ``inputs`` and wait for their probabilities (in order)."""
        request = _Request(inputs)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.outputs

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        batch, count = [first], len(first.inputs)
        deadline = time.perf_counter() + self.window_s
        while count < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                nxt = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
            count += len(nxt.inputs)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        inputs = [x for request in batch for x in request.inputs]
        self.batch_sizes[len(inputs)] += 1
        try:
            outputs = self.backend.infer(inputs)
        except Exception as err:  # noqa: BLE001 -- handed to every waiting caller, re-raised there
            for request in batch:
                request.error = err
        else:
            start = 0
            for request in batch:
                request.outputs = outputs[start : start + len(request.inputs)]
                start += len(request.inputs)
        for request in batch:
            request.done.set()

    def _loop(self) -> None:
        warm_up = getattr(self.backend, "warm_up", None)
        try:
            if callable(warm_up):
                warm_up()  # in this thread: the one that runs every batch
        except Exception as err:  # noqa: BLE001 -- re-raised by the constructor as ModelLoadError
            self._warm_up_error = err
            return
        finally:
            self._ready.set()
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._run(batch)

    def close(self) -> None:
        """Finish queued work and stop the batching thread."""
        self._queue.put(None)
        self._thread.join(timeout=5)
