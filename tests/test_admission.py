"""Admission control and the Segmenter's concurrency gates."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from service.api.admission import Admission, AdmissionMiddleware
from service.api.errors import Overloaded
from service.imaging.types import DecodedImage
from service.models.base import ModelInfo
from service.models.segmenter import Segmenter
from service.pipeline.params import PostprocessParams


def test_refuses_beyond_the_limit_and_recovers_at_once():
    refusals: list[int] = []
    counts: list[int] = []

    async def scenario() -> tuple[int, int]:
        gate = Admission(3, 5, observe=counts.append, on_refusal=lambda: refusals.append(1))
        release = asyncio.Event()

        async def work() -> str:
            async with gate.slot():
                await release.wait()
            return "ok"

        tasks = [asyncio.create_task(work()) for _ in range(3)]
        await asyncio.sleep(0)
        assert gate.admitted == 3 and gate.full
        with pytest.raises(Overloaded) as refused:
            async with gate.slot():
                pass
        assert refused.value.retry_after_s == 5
        release.set()
        assert await asyncio.gather(*tasks) == ["ok"] * 3
        async with gate.slot():  # load gone: admitted again at once
            inside = gate.admitted
        return inside, gate.admitted

    assert asyncio.run(scenario()) == (1, 0)
    assert refusals == [1]
    assert counts == [1, 2, 3, 2, 1, 0, 1, 0]


class SlowBackend:
    """Records how many inferences overlap."""

    info = ModelInfo("slow-cxr", "0", "unet", "cxr")
    postprocess = PostprocessParams()
    provider = "test"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()

    def prepare(self, frame, units):
        return frame

    def infer(self, inputs):
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return [np.zeros((2, 8, 8), np.float32) for _ in inputs]


def test_segmenter_bounds_concurrent_inferences():
    segmenter = Segmenter(None, max_inferences=2, cpu_stages=2)
    backend = SlowBackend()
    segmenter.backend_for = lambda kind, modality: (backend, None)  # type: ignore[method-assign]
    image = DecodedImage(np.zeros((1, 8, 8), np.float32), "display", None, "png")
    threads = [threading.Thread(target=segmenter.segment_image, args=(image,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.peak == 2


def test_the_middleware_holds_the_admission_while_the_upload_is_read():
    gate = Admission(limit=1, retry_after_s=2)
    app_ref = SimpleNamespace(state=SimpleNamespace(admission=gate))
    body_arrives = asyncio.Event()
    seen: list[int] = []

    async def handler(scope, receive, send) -> None:
        seen.append(gate.admitted)  # admitted before the body is read
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def request(arrival: asyncio.Event | None) -> list[dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            if arrival is not None:
                await arrival.wait()
            return {"type": "http.request", "body": b"x", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/v1/segment", "app": app_ref, "headers": []}
        await AdmissionMiddleware(handler)(scope, receive, send)
        return sent

    async def scenario() -> tuple[list[dict], list[dict], int]:
        slow = asyncio.create_task(request(body_arrives))
        await asyncio.sleep(0)  # the slow upload is admitted and waits for its body
        refused = await request(None)
        body_arrives.set()
        return await slow, refused, gate.admitted

    served, refused, after = asyncio.run(scenario())
    assert seen == [1]
    assert served[0]["status"] == 200
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"2") in refused[0]["headers"]
    assert after == 0
