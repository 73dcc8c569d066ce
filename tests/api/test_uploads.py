"""Upload handling: bodies streamed without Content-Length are bounded too, stalled uploads time
out (408), and image uploads are held in memory (never spooled to a temporary file)."""

from __future__ import annotations

import asyncio
import tempfile

import cv2
import numpy as np
import pytest
from starlette.requests import Request

from bench.load import multipart_body
from service.api.uploads import UploadLimits, read_upload
from service.errors import InputTooLargeError, UploadTimeoutError
from tests.api.test_errors import assert_problem


def _chunks(body: bytes, size: int = 4096):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_upload_past_the_limit_is_413_problem_json(make_client):
    client = make_client(max_upload_bytes=1000)  # + 1 MiB multipart slack
    content_type, body = multipart_body("big.dcm", b"\0" * (2 << 20))
    response = client.post(
        "/v1/segment", content=_chunks(body), headers={"Content-Type": content_type}
    )
    assert "content-length" not in response.request.headers  # really streamed
    assert_problem(response, 413, "exceeds the limit")
    assert response.json()["type"].endswith("input-too-large")


def test_a_chunked_upload_within_the_limit_is_segmented(client, data_dir):
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    content_type, body = multipart_body("ct.dcm", data)
    response = client.post(
        "/v1/segment", content=_chunks(body, 1000), headers={"Content-Type": content_type}
    )
    assert response.status_code == 200
    assert response.json()["model"]["name"] == "unet-ct"


def test_an_upload_over_one_mebibyte_never_touches_the_disk(client, monkeypatch):
    rolled: list[int] = []
    original = tempfile.SpooledTemporaryFile.rollover

    def record(self: tempfile.SpooledTemporaryFile) -> None:
        rolled.append(1)
        original(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", record)
    noise = np.random.default_rng(3).integers(0, 256, size=(1100, 1100), dtype=np.uint8)
    ok, png = cv2.imencode(".png", noise)
    assert ok and len(png) > 1 << 20  # more than Starlette's default spool size
    response = client.post("/v1/segment", files={"file": ("big.png", png.tobytes())})
    assert response.status_code == 200
    assert (response.json()["height"], response.json()["width"]) == (1100, 1100)
    assert rolled == []


@pytest.mark.parametrize("route", ["/v1/segment", "/v1/render"])
def test_a_declared_length_past_the_limit_is_refused_before_reading(make_client, route):
    client = make_client(max_upload_bytes=1000)
    content_type, body = multipart_body("big.dcm", b"\0" * (2 << 20))
    response = client.post(route, content=body, headers={"Content-Type": content_type})
    assert_problem(response, 413, f"request body of {len(body)} bytes exceeds the limit")


def _script(*messages: dict):
    """An ASGI ``receive`` that returns ``messages`` in order, then waits for ever."""
    queue = list(messages)

    async def receive() -> dict:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    return receive


def _read(receive, limit: int = 100, idle: float = 1.0) -> bytes:
    """``read_upload`` of a raw application/dicom body arriving through ``receive``."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/segment",
        "headers": [(b"content-type", b"application/dicom")],
    }
    request = Request(scope, receive)
    return asyncio.run(read_upload(request, UploadLimits(limit, idle))).data


def test_a_stalled_upload_is_refused_with_408():
    receive = _script({"type": "http.request", "body": b"abc", "more_body": True})
    with pytest.raises(UploadTimeoutError, match=r"no data for 0\.05 s"):
        _read(receive, idle=0.05)


def test_streamed_bytes_past_the_limit_are_refused_with_413():
    chunk = {"type": "http.request", "body": b"x" * 60, "more_body": True}
    with pytest.raises(InputTooLargeError):
        _read(_script(chunk, chunk))


def test_a_raw_dicom_body_is_an_upload():
    first = {"type": "http.request", "body": b"DICM", "more_body": True}
    last = {"type": "http.request", "body": b"data", "more_body": False}
    assert _read(_script(first, last), idle=0.01) == b"DICMdata"
