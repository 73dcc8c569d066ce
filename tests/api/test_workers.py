"""Several uvicorn workers: ``/metrics`` on any of them reports the counts of all of them."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from bench.serve import running_service

REQUESTS = 24


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def _count(text: str, route: str) -> float:
    pattern = rf'lungseg_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)'
    return sum(float(v) for v in re.findall(pattern, text))


def test_metrics_sum_over_workers(tmp_path: Path):
    env = {
        "LUNGSEG_WORKERS": "2",
        "LUNGSEG_MODELS_DIR": str(tmp_path / "no-models"),  # threshold only: quick start
        "LUNGSEG_DATABASE_URL": f"sqlite:///{tmp_path / 'runs.db'}",
    }
    with running_service(env, tmp_path / "service.log") as svc:
        base = f"http://{svc.host}:{svc.port}"
        for _ in range(REQUESTS):  # a new connection each: the kernel spreads them
            json.loads(_get(f"{base}/v1/models"))
        scrapes = [_get(f"{base}/metrics").decode() for _ in range(6)]
    assert [_count(text, "/v1/models") for text in scrapes] == [float(REQUESTS)] * 6
    assert all("lungseg_requests_in_flight" in text for text in scrapes)
    assert (
        "Prometheus metrics of the 2 workers are shared" in (tmp_path / "service.log").read_text()
    )
