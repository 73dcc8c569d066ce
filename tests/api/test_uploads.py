"""Upload handling: bodies streamed without Content-Length are bounded too, and image uploads
are held in memory (never spooled to a temporary file)."""

from __future__ import annotations

import tempfile

import cv2
import numpy as np
import pytest

from service.perf.load import multipart_body
from tests.api.test_errors import assert_problem


def _chunks(body: bytes, size: int = 4096):
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_a_chunked_upload_past_the_limit_is_413_problem_json(make_client, data_dir):
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
