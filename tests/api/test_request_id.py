"""X-Request-ID: echoed when the client sends a plain token, made up otherwise, and written in
the log line of a failed request (500s included)."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.api.settings import Settings


def test_a_request_id_is_made_up_when_none_is_sent(client):
    response = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("pacs-42.study:7", True), ("has spaces", False), ("x" * 129, False), ("é", False)],
)
def test_a_plain_request_id_is_echoed_others_are_replaced(client, sent: str, echoed: bool):
    response = client.get("/healthz", headers={"X-Request-ID": sent.encode("utf-8")})
    assert (response.headers["x-request-id"] == sent) is echoed
    if not echoed:
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_a_refused_upload_is_logged_with_its_request_id(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.post(
        "/v1/segment", files={"file": ("a.txt", b"text")}, headers={"X-Request-ID": "bridge-1"}
    )
    assert response.status_code == 415
    assert response.headers["x-request-id"] == "bridge-1"
    assert "request bridge-1: POST /v1/segment -> 415 UnsupportedMediaError" in caplog.text


def test_an_internal_error_names_its_request_id(tmp_path, caplog, monkeypatch):
    def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    settings = Settings(models_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'r.db'}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        monkeypatch.setattr(client.app.state.segmenter, "segment_bytes", broken)
        response = client.post(
            "/v1/segment", files={"file": ("a.png", b"\x89PNG")}, headers={"X-Request-ID": "r-9"}
        )
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "r-9"
    assert response.json()["detail"] == "internal error; see the service log (request r-9)"
    assert "request r-9: unhandled error on POST /v1/segment" in caplog.text
