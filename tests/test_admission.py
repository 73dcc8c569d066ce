"""Admission control: bounded in-flight work, bounded queue, immediate refusal beyond."""

from __future__ import annotations

import asyncio

import pytest

from service.api.admission import Admission
from service.api.errors import Overloaded


def test_refuses_beyond_slots_plus_queue_and_recovers():
    async def scenario() -> tuple[int, int, int]:
        gate = Admission(in_flight=2, queue=1, retry_after_s=5)
        release = asyncio.Event()
        peak = 0

        async def work() -> str:
            nonlocal peak
            async with gate.slot():
                peak = max(peak, gate.running)
                await release.wait()
            return "ok"

        tasks = [asyncio.create_task(work()) for _ in range(3)]
        await asyncio.sleep(0)
        assert (gate.admitted, gate.running) == (3, 2)
        with pytest.raises(Overloaded) as refused:
            async with gate.slot():
                pass
        assert refused.value.retry_after_s == 5
        release.set()
        results = await asyncio.gather(*tasks)
        assert results == ["ok"] * 3
        async with gate.slot():  # load gone: admitted again at once
            pass
        return peak, gate.admitted, gate.running

    assert asyncio.run(scenario()) == (2, 0, 0)
