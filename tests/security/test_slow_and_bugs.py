"""Red team, findings 3 and 5 of issue 11: slow senders cannot hold the worker's admissions,
and a bug's 500 leaves the keep-alive connection usable; no 500 from a frame count that lies."""

from __future__ import annotations

import io
import socket
import time

import httpx
import pydicom
import pytest

from service.api.main import create_app
from service.api.settings import Settings
from service.api.uploads import UploadLimits
from tests.security.live import serving


def test_the_rate_rule_gives_a_slow_sender_a_deadline():
    limits = UploadLimits(100, idle_timeout_s=30, min_bytes_per_s=1000, deadline_s=60)
    wait, reason = limits.wait_s(elapsed=0.0, received=0)
    assert wait == pytest.approx(5.0) and "slower than 1000 bytes/s" in reason
    wait, _ = limits.wait_s(elapsed=6.0, received=2000)  # 2 s of credit at 1000 B/s
    assert wait == pytest.approx(1.0)
    wait, reason = limits.wait_s(elapsed=59.5, received=10**9)
    assert wait == pytest.approx(0.5) and "not complete after 60 s" in reason
    assert UploadLimits(100, 30).wait_s(100.0, 0) == (30, "no data for 30 s")


def _trickle(port: int, body_len: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/segment HTTP/1.1\r\nHost: x\r\nContent-Type: application/dicom\r\n"
        + f"Content-Length: {body_len}\r\n\r\n".encode()
        + b"D"
    )
    return sock


def test_slow_senders_are_refused_and_the_worker_serves_others(tmp_path, data_dir):
    settings = Settings(
        models_dir=tmp_path / "none",
        database_url=f"sqlite:///{tmp_path / 'db'}",
        max_in_flight=1,
        max_queue=1,
        upload_min_bytes_per_s=1000,
    )
    ct = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    with serving(create_app(settings)) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = [_trickle(port, 10_000) for _ in range(2)]
        time.sleep(0.5)
        busy = httpx.post(
            f"{base}/v1/segment", content=ct, headers={"Content-Type": "application/dicom"}
        )
        assert busy.status_code == 503  # both admissions held by the trickling uploads
        started = time.monotonic()
        answers = []
        for sock in slow:
            sock.settimeout(15)
            answers.append(sock.recv(4096).decode("latin-1"))
            sock.close()
        waited = time.monotonic() - started
        served = httpx.post(
            f"{base}/v1/segment", content=ct, headers={"Content-Type": "application/dicom"}
        )
    assert all(a.startswith("HTTP/1.1 408") and "slower than 1000 bytes/s" in a for a in answers)
    assert waited < 8  # refused after the 5 s grace, not after the 30 s idle timeout
    assert served.status_code == 200


def test_a_bug_is_a_500_and_the_connection_stays_usable(tmp_path, data_dir, monkeypatch):
    settings = Settings(models_dir=tmp_path / "none", database_url=f"sqlite:///{tmp_path / 'db'}")
    app = create_app(settings)
    ct = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    with serving(app) as base, httpx.Client(base_url=base) as client:
        original = app.state.segmenter.segment_bytes

        def broken(*args, **kwargs):
            if broken.calls == 0:
                broken.calls += 1
                raise RuntimeError("a bug")
            return original(*args, **kwargs)

        broken.calls = 0
        monkeypatch.setattr(app.state.segmenter, "segment_bytes", broken)
        headers = {"Content-Type": "application/dicom", "X-Request-ID": "bug-1"}
        first = client.post("/v1/segment", content=ct, headers=headers)
        second = client.post(
            "/v1/segment", content=ct, headers={"Content-Type": "application/dicom"}
        )
        third = client.get("/healthz")
    assert first.status_code == 500
    assert first.headers["content-type"] == "application/problem+json"
    assert first.json()["detail"] == "internal error; see the service log (request bug-1)"
    assert second.status_code == 200 and third.status_code == 200


@pytest.mark.parametrize("name", ["693_J2KR.dcm", "RG1_J2KR.dcm", "693_UNCR.dcm"])
@pytest.mark.parametrize("route", ["/v1/segment", "/v1/render"])
def test_a_frame_count_larger_than_the_pixel_data_is_a_415(client, data_dir, name, route):
    ds = pydicom.dcmread(data_dir / "files/dicom" / name)
    ds.NumberOfFrames = 2
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    response = client.post(route, files={"file": ("x.dcm", buffer.getvalue())})
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
