"""Health, readiness, models, metrics, offline Swagger UI and the committed OpenAPI document."""

from __future__ import annotations

import json
import shutil

from openapi_spec_validator import validate

from service.api.openapi_dump import render
from service.api.settings import REPO_ROOT
from service.models.registry import latest_versions


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ok"
    assert ready["models_loaded"] == sorted(latest_versions(REPO_ROOT / "models"))
    assert set(ready["providers"].values()) <= {"CPUExecutionProvider", "CUDAExecutionProvider"}


def test_models_lists_cards_providers_and_fallbacks(client):
    body = client.get("/v1/models").json()
    names = {m["name"] for m in body["models"]}
    assert names == set(latest_versions(REPO_ROOT / "models"))
    for model in body["models"]:
        assert model["provider"] in body["providers_available"]
        assert model["card"]["name"] == model["name"]
        assert len(model["card"]["sha256"]) == 64
    assert body["fallback"] == ["threshold-cxr", "threshold-ct"]
    assert body["unavailable"] == {}


def test_broken_model_is_reported_and_falls_back(make_client, tmp_path, data_dir):
    models = tmp_path / "models"
    shutil.copytree(REPO_ROOT / "models", models)
    (version_dir,) = [p for p in (models / "unet-ct").iterdir() if p.is_dir()]
    for onnx_file in version_dir.glob("model*.onnx"):  # whichever variant is served
        onnx_file.write_bytes(b"not an onnx file")
    client = make_client(models_dir=models)
    unavailable = client.get("/v1/models").json()["unavailable"]
    assert "sha256" in unavailable["unet-ct"]
    with (data_dir / "files/dicom/CT_small.dcm").open("rb") as handle:
        body = client.post("/v1/segment", files={"file": ("ct.dcm", handle)}).json()
    assert body["model"]["kind"] == "threshold"
    assert "unet-ct is unavailable" in body["fallback"]


def test_missing_models_dir_serves_threshold(make_client, tmp_path, data_dir):
    client = make_client(models_dir=tmp_path / "none")
    assert client.get("/readyz").json()["models_loaded"] == []
    with (data_dir / "files/dicom/CT_small.dcm").open("rb") as handle:
        body = client.post("/v1/segment", files={"file": ("ct.dcm", handle)}).json()
    assert body["model"]["kind"] == "threshold" and "not installed" in body["fallback"]


def test_metrics_count_requests_by_route_model_status(client, data_dir):
    with (data_dir / "files/dicom/CT_small.dcm").open("rb") as handle:
        client.post("/v1/segment", params={"model": "threshold"}, files={"file": ("a.dcm", handle)})
    client.post("/v1/segment", files={"file": ("b.txt", b"text")})
    text = client.get("/metrics").text
    labels = 'method="POST",model="threshold-ct",route="/v1/segment",status="200"'
    assert f"lungseg_requests_total{{{labels}}} 1.0" in text
    assert 'route="/v1/segment",status="415"} 1.0' in text
    assert (
        'lungseg_inference_duration_seconds_count{model="threshold-ct",provider="numpy"} 1.0'
        in text
    )
    assert "lungseg_requests_in_flight" in text and "lungseg_model_info{" in text


def test_swagger_ui_is_served_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/static/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    asset = client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 1_000_000


def test_committed_openapi_is_current_and_valid():
    committed = (REPO_ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"
    validate(json.loads(committed))
