"""Admission control and the Segmenter's concurrency gates."""

from __future__ import annotations

import asyncio
import threading
import time

import cv2
import httpx
import numpy as np
import pytest

from bench.load import multipart_body
from service.api.admission import Admission
from service.api.errors import Overloaded
from service.api.main import create_app
from service.api.settings import Settings
from service.imaging.types import DecodedImage
from service.models.base import ModelInfo, Prediction
from service.models.segmenter import Segmenter, SegmenterConfig
from service.pipeline.params import DecisionParams, PostprocessParams


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
    decision = DecisionParams.a_priori("cxr")
    provider = "test"
    precision = "fp32"

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
        return [Prediction(probabilities=np.zeros((2, 8, 8), np.float32)) for _ in inputs]


def test_segmenter_bounds_concurrent_inferences():
    segmenter = Segmenter(SegmenterConfig(None, max_inferences=2, cpu_stages=2))
    backend = SlowBackend()
    segmenter.backend_for = lambda kind, modality: (backend, None)  # type: ignore[method-assign]
    image = DecodedImage(np.zeros((1, 8, 8), np.float32), "display", None, "png")
    threads = [threading.Thread(target=segmenter.segment_image, args=(image,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.peak == 2


def test_the_admission_is_held_while_the_upload_is_read(tmp_path):
    """Two uploads still streaming in fill a worker admitting two: a third gets 503 at once,
    before its body is read; once they complete, they are served."""
    settings = Settings(
        models_dir=tmp_path / "none",
        database_url=f"sqlite:///{tmp_path / 'db'}",
        max_in_flight=1,
        max_queue=1,
        retry_after_s=2,
    )
    app = create_app(settings)
    ok, png = cv2.imencode(".png", np.full((64, 64), 128, np.uint8))
    content_type, body = multipart_body("x.png", png.tobytes())
    release = asyncio.Event()

    async def slow_body():
        yield body[:100]
        await release.wait()
        yield body[100:]

    async def scenario() -> tuple[httpx.Response, list[httpx.Response], int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                headers = {"Content-Type": content_type}
                slow = [
                    asyncio.create_task(
                        client.post("/v1/segment", content=slow_body(), headers=headers)
                    )
                    for _ in range(2)
                ]
                await asyncio.sleep(0.3)
                admitted = app.state.admission.admitted
                refused = await client.post("/v1/segment", content=body, headers=headers)
                release.set()
                return refused, list(await asyncio.gather(*slow)), admitted

    refused, served, admitted = asyncio.run(scenario())
    assert ok and admitted == 2
    assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
    assert [r.status_code for r in served] == [200, 200]
