"""The clients of the topology test (tests/topology/test_topology.py): locust users posting real
images to ``/v1/segment`` and reading ``/v1/models`` through the load balancer, with no wait
between requests (the replicas are CPU-bound: the load is as much as they take).

Run by the test as ``python -m locust --headless`` in a process of its own (locust patches the
standard library with gevent, which must not happen in the pytest process). Configured by the
environment: ``LUNGSEG_TOPOLOGY_KEY`` (an API key), ``LUNGSEG_TOPOLOGY_PNG`` and
``LUNGSEG_TOPOLOGY_DICOM`` (the uploads), ``LUNGSEG_TOPOLOGY_LOG`` (a JSON-lines file: one line
per request with its start time, duration, status, exception, the replica that answered and the
``Retry-After``, which the test reads for its counts).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, task

from bench.load import multipart_body

KEY = os.environ["LUNGSEG_TOPOLOGY_KEY"]
PNG = multipart_body("chest.png", Path(os.environ["LUNGSEG_TOPOLOGY_PNG"]).read_bytes())
DICOM = multipart_body("slice.dcm", Path(os.environ["LUNGSEG_TOPOLOGY_DICOM"]).read_bytes())
_LOG = Path(os.environ["LUNGSEG_TOPOLOGY_LOG"]).open("a", buffering=1)  # noqa: SIM115


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    response: Any,
    context: dict[str, Any],
    exception: BaseException | None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    headers = getattr(response, "headers", None) or {}
    status = getattr(response, "status_code", 0) or 0
    line = {
        "name": name,
        "start": start_time,
        "ms": response_time,
        "status": status,
        "exception": None if exception is None or 0 < status < 400 else repr(exception)[:200],
        "server": headers.get("X-Served-By"),
        "retry_after": headers.get("Retry-After"),
        "request_id": context.get("request_id"),
        "echoed_id": headers.get("X-Request-ID"),
    }
    _LOG.write(json.dumps(line) + "\n")


class Client(FastHttpUser):
    wait_time = constant(0)
    connection_timeout = 10.0
    network_timeout = 60.0

    def _send(self, method: str, path: str, name: str, upload: tuple[str, bytes] | None) -> None:
        request_id = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {KEY}", "X-Request-ID": request_id}
        body: Any = None  # bytes: FastHttpSession sends them as they are
        if upload is not None:
            headers["Content-Type"], body = upload
        self.client.request(
            method, path, name=name, data=body, headers=headers, context={"request_id": request_id}
        )

    @task(4)
    def segment_png(self) -> None:
        self._send("POST", "/v1/segment", "segment cxr png", PNG)

    @task(2)
    def segment_dicom(self) -> None:
        self._send("POST", "/v1/segment", "segment ct dicom", DICOM)

    @task(1)
    def models(self) -> None:
        self._send("GET", "/v1/models", "models", None)
