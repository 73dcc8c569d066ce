"""Red team, findings 8 to 10 of issue 11: an audit line per request without identifiers,
ordinary 4xx without tracebacks, JSON logs, security headers, CORS off by default, an honest
Allow header."""

from __future__ import annotations

import io
import json
import logging

import pydicom
import pytest

from service.api import logs


def test_one_audit_line_per_request_without_names_or_uids(client, data_dir, caplog):
    caplog.set_level(logging.INFO)
    ds = pydicom.dcmread(data_dir / "files/dicom/CT_small.dcm")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    name = "Doe^Jane_1.2.3.dcm"
    response = client.post(
        "/v1/segment", files={"file": (name, buffer.getvalue())}, headers={"X-Request-ID": "a-1"}
    )
    assert response.status_code == 200
    lines = [r for r in caplog.records if r.name == "lungseg.access"]
    assert len(lines) == 1
    line = lines[0]
    assert (line.request_id, line.method, line.route, line.status) == (
        "a-1",
        "POST",
        "/v1/segment",
        200,
    )
    assert line.bytes_in > 30_000 and line.bytes_out > 100 and line.duration_ms > 0
    text = caplog.text
    for secret in (
        name,
        "Doe",
        str(ds.SOPInstanceUID),
        str(ds.StudyInstanceUID),
        str(ds.PatientID),
    ):
        assert secret not in text


def test_an_ordinary_415_logs_no_traceback_and_nothing_above_info(client, caplog):
    caplog.set_level(logging.DEBUG)
    broken = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00junk" + b"\xff" * 300
    response = client.post("/v1/segment", files={"file": ("x.dcm", broken)})
    assert response.status_code == 415
    mine = [r for r in caplog.records if r.name.startswith(("lungseg", "service", "pydicom"))]
    assert all(r.levelno <= logging.INFO and r.exc_info is None for r in mine)


def test_json_logs_carry_the_audit_fields():
    record = logging.LogRecord("lungseg.access", logging.INFO, "x", 1, "%s", ("m",), None)
    record.request_id, record.status, record.route = "r-1", 200, "/v1/segment"
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["request_id"] == "r-1" and line["status"] == 200 and line["level"] == "INFO"
    assert line["route"] == "/v1/segment" and line["time"].endswith("+00:00")


def test_library_warnings_go_through_logging(caplog):
    import warnings

    logging.captureWarnings(False)  # pytest records warnings itself: take them back
    logs.configure("info", "text")
    caplog.set_level(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(False)
        logging.captureWarnings(True)
        warnings.warn("numpy says something", RuntimeWarning, stacklevel=1)
    assert any(r.name == "py.warnings" and "numpy says" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", ["/v1/models", "/healthz", "/v1/benchmark/nope"])
def test_every_answer_has_nosniff_no_store_and_no_referrer(client, path):
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("page", ["/viewer", "/dashboard"])
def test_pages_forbid_framing_and_foreign_scripts(client, page):
    headers = client.get(page).headers
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert headers["x-frame-options"] == "DENY"


def test_cors_is_off_unless_origins_are_listed(make_client):
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    closed = make_client().options("/v1/segment", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    opened = make_client(cors_origins=["https://pacs.example"])
    allowed = opened.options("/v1/segment", headers={**preflight, "Origin": "https://pacs.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://pacs.example"
    refused = opened.options("/v1/segment", headers=preflight)
    assert "access-control-allow-origin" not in refused.headers


def test_a_wrong_method_lists_every_method_of_the_path(client):
    response = client.request("OPTIONS", "/v1/benchmark")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("fmt", ["seg", "fhir"])
def test_a_seg_or_fhir_answer_is_a_file_and_logs_no_uid(client, data_dir, caplog, fmt):
    caplog.set_level(logging.DEBUG)
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(data_dir / "files/dicom/CT_small.dcm")
    response = client.post("/v1/segment", params={"format": fmt}, files={"file": ("a.dcm", data)})
    assert response.status_code == 200
    assert response.headers["content-type"] in ("application/dicom", "application/fhir+json")
    assert response.headers["content-disposition"].startswith('attachment; filename="lungseg')
    for uid in (str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)):
        assert uid not in caplog.text
        assert uid not in response.headers["content-disposition"]
