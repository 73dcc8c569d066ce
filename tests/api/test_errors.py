"""Every failure is RFC 7807 problem+json with the right 4xx, never a 500."""

from __future__ import annotations

import io
import zipfile

import pytest

from service.api.admission import Admission

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def assert_problem(response, status: int, fragment: str = ""):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("http")
    assert fragment.lower() in body["detail"].lower()
    return body


def upload(client, data: bytes, name: str = "x.bin", **params):
    return client.post("/v1/segment", params=params, files={"file": (name, data)})


def test_empty_upload_is_400(client):
    assert_problem(upload(client, b""), 400, "empty")


def test_missing_file_field_is_400(client):
    assert_problem(client.post("/v1/segment"), 400, "file")


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file\n", b"%PDF-1.7\n%...", bytes(range(256)) * 4],
    ids=["text", "pdf", "random"],
)
def test_not_an_image_is_415(client, data):
    assert_problem(upload(client, data), 415)


def test_truncated_dicom_is_415(client, data_dir):
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    assert_problem(upload(client, data[: len(data) // 2], "cut.dcm"), 415)


def test_truncated_png_is_415(client, data_dir):
    path = next((data_dir / "files/covid-qu-ex-layout/Val/Normal/images").glob("*.png"))
    data = path.read_bytes()
    assert_problem(upload(client, data[: len(data) // 3], "cut.png"), 415)


def test_upload_over_byte_limit_is_413(make_client, data_dir):
    client = make_client(max_upload_bytes=10_000)
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    assert_problem(upload(client, data, "ct.dcm"), 413, "bytes")


def test_image_over_pixel_limit_is_413(make_client, data_dir):
    client = make_client(max_pixels=100 * 100)
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    assert_problem(upload(client, data, "ct.dcm"), 413)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"model": "resnet"}, "model"),
        ({"modality": "mr"}, "modality"),
        ({"format": "gif"}, "format"),
    ],
)
def test_unknown_parameter_values_are_422(client, data_dir, params, field):
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    body = assert_problem(upload(client, data, "ct.dcm", **params), 422, field)
    assert body["errors"][0]["loc"][-1] == field


def test_modality_contradicting_dicom_is_422(client, data_dir):
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    assert_problem(upload(client, data, "ct.dcm", modality="cxr"), 422, "contradicts")


def test_saturated_service_answers_503_with_retry_after_and_counts_it(client, data_dir):
    refusals = client.app.state.metrics.rejected
    client.app.state.admission = Admission(limit=0, retry_after_s=3, on_refusal=refusals.inc)
    data = (data_dir / "files/dicom/CT_small.dcm").read_bytes()
    response = upload(client, data, "ct.dcm")
    assert_problem(response, 503, "capacity")
    assert response.headers["retry-after"] == "3"
    assert "lungseg_rejected_total 1.0" in client.get("/metrics").text


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def bench(client, data: bytes):
    return client.post("/v1/benchmark", files={"file": ("set.zip", data)})


def test_bad_zip_is_400(client):
    assert_problem(bench(client, b"PK\x03\x04 not really a zip"), 400, "zip")


def test_zip_escaping_paths_is_400(client):
    assert_problem(bench(client, zip_bytes({"../evil.png": PNG_HEADER})), 400, "escapes")


def test_zip_bomb_is_400(client):
    assert_problem(bench(client, zip_bytes({"a.bin": b"\0" * 5_000_000})), 400, "zip bomb")


def test_zip_without_a_labelled_set_is_400(client):
    assert_problem(bench(client, zip_bytes({"readme.txt": b"hello"})), 400, "no labelled images")


def test_benchmark_needs_a_set(client):
    assert_problem(client.post("/v1/benchmark"), 400, "either")


def test_unknown_server_side_set_is_404(client):
    assert_problem(client.post("/v1/benchmark", params={"set_name": "nope"}), 404, "nope")


def test_unknown_benchmark_id_is_404(client):
    assert_problem(client.get("/v1/benchmark/does-not-exist"), 404)


def test_unknown_route_is_problem_json(client):
    assert_problem(client.get("/v2/nothing"), 404)
