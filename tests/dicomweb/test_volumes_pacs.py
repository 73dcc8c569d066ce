"""The PACS flow end to end, against a real Orthanc (its own, so that no other test's SEG is in
the study): the real 64-slice chest series STOWed into it, ``POST /v1/volumes`` naming the
series with ``store=true``, the job done, the SEG found in Orthanc by QIDO, retrieved, its
references and frames checked against the job's masks, and dciodvfy run on it. Failures: a
PACS that is down (nothing listens) or refuses the credentials leaves the job done with its
masks and a ``store`` record saying why; a pull from a stopped PACS fails the job clearly."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from service.dicomweb import DicomwebClient, DicomwebConfig
from tests.api.conftest import rle_to_mask
from tests.api.volume_helpers import wait_done, zipped
from tests.encoders.seg_helpers import dciodvfy, segread, series_files
from tests.pacs import OrthancServer, OrthancUnavailable, free_port


def _start() -> OrthancServer:
    try:
        return OrthancServer().start()
    except OrthancUnavailable as err:
        if os.environ.get("LUNGSEG_REQUIRE_PACS") == "1":
            pytest.fail(f"Orthanc required (LUNGSEG_REQUIRE_PACS=1): {err}")
        pytest.skip(f"Orthanc not available: {err}")


@pytest.fixture(scope="module")
def pacs(data_dir: Path) -> Iterator[tuple[OrthancServer, list[bytes]]]:
    """An Orthanc of this module holding the real chest series."""
    server = _start()
    try:
        files = series_files(data_dir)
        with DicomwebClient(_config(server)) as client:
            assert client.store(files).complete
        yield server, files
    finally:
        server.stop()


def _config(server: OrthancServer) -> DicomwebConfig:
    return DicomwebConfig(server.dicomweb_url, username=server.user, password=server.password)


def _settings(server: OrthancServer, **more: Any) -> dict[str, Any]:
    return {
        "dicomweb_url": server.dicomweb_url,
        "dicomweb_username": server.user,
        "dicomweb_password": server.password,
        "dicomweb_retries": 2,
        **more,
    }


def _uids(files: list[bytes]) -> tuple[str, str, list[str]]:
    """Study and series UIDs, and the instance UIDs in ascending slice position (z)."""
    headers = [pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True) for f in files]
    ordered = sorted(headers, key=lambda h: float(h.ImagePositionPatient[2]))
    first = ordered[0]
    uids = [str(h.SOPInstanceUID) for h in ordered]
    return str(first.StudyInstanceUID), str(first.SeriesInstanceUID), uids


def test_a_series_pulled_from_the_pacs_and_its_seg_stored_back(
    make_client, pacs, tmp_path: Path
) -> None:
    server, files = pacs
    study, series, instances = _uids(files)
    client = make_client(**_settings(server))
    response = client.post(
        "/v1/volumes",
        json={"study_uid": study, "series_uid": series},
        params={"store": "true"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["source"] == "pacs" and response.json()["store"] is True
    job = wait_done(client, response.json()["id"], timeout_s=600)
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["n_slices"] == 64 and result["files"] == 64 and "retrieve" in result["timings_ms"]
    record = result["store"]
    assert record["status"] == "stored", record
    assert record["pacs_status"] == 200 and record["attempts"] == 1 and record["error"] is None
    assert record["stored"] == [record["seg_sop_instance_uid"]]

    with DicomwebClient(_config(server)) as pacs_client:
        found = {s.modality: s for s in pacs_client.find_series(study)}
        assert set(found) == {"CT", "SEG"} and found["SEG"].instances == 1
        (stored,) = pacs_client.retrieve_series(study, found["SEG"].series_uid)
    assert stored == client.get(f"/v1/volumes/{job['id']}/seg").content
    segmentation = segread(stored)
    assert str(segmentation.SOPInstanceUID) == record["seg_sop_instance_uid"]
    assert str(segmentation.StudyInstanceUID) == study
    assert {u[2] for u in segmentation.get_source_image_uids()} == set(instances)
    pixels = segmentation.get_pixels_by_source_instance(instances)
    rle = client.get(f"/v1/volumes/{job['id']}/mask", params={"format": "rle"}).json()
    assert [e["index"] for e in rle["slices"]] == list(range(64))  # ascending along the normal
    for entry, frame in zip(rle["slices"], pixels, strict=True):
        assert np.array_equal(frame[..., 0].astype(bool), rle_to_mask(entry["lung"]))
        assert np.array_equal(frame[..., 1].astype(bool), rle_to_mask(entry["infection"]))
    assert pixels[..., 0].any() and 4000 < result["lung_volume_ml"] < 7000

    path = tmp_path / "seg-from-pacs.dcm"
    path.write_bytes(stored)
    errors, warnings = dciodvfy(path)
    print("dciodvfy:", errors, warnings)
    assert errors == []


def _upload(client: Any, files: list[bytes], **params: str) -> dict[str, Any]:
    body = zipped({f"{i}.dcm": data for i, data in enumerate(files)})
    response = client.post(
        "/v1/volumes",
        content=body,
        params={"model": "threshold", **params},
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 202, response.text
    return wait_done(client, response.json()["id"])


def test_a_pacs_that_is_down_leaves_the_job_done_with_its_seg(make_client, pacs) -> None:
    server, files = pacs
    down = f"http://127.0.0.1:{free_port()}/dicom-web"  # nothing listens there
    client = make_client(**_settings(server, dicomweb_url=down))
    job = _upload(client, files[30:38], store="true")
    assert job["status"] == "done", job["error"]
    record = job["result"]["store"]
    assert record["status"] == "failed" and record["retryable"] is True
    assert "could not be reached" in record["error"] and record["pacs_status"] is None
    assert record["attempts"] == 3  # nothing was sent: retried twice with backoff
    seg = client.get(f"/v1/volumes/{job['id']}/seg")
    assert seg.status_code == 200 and segread(seg.content).NumberOfFrames == 16


def test_a_pacs_refusing_the_credentials_is_not_retried(make_client, pacs) -> None:
    server, files = pacs
    client = make_client(**_settings(server, dicomweb_password="wrong"))
    job = _upload(client, files[30:34], store="true")
    record = job["result"]["store"]
    assert job["status"] == "done" and record["status"] == "failed"
    assert record["pacs_status"] == 401 and record["attempts"] == 1
    assert record["retryable"] is False and "credentials" in record["error"]


def test_a_pull_from_a_stopped_pacs_fails_the_job_clearly(make_client, data_dir: Path) -> None:
    server = _start()
    settings = _settings(server)
    server.stop()
    client = make_client(**settings)
    response = client.post("/v1/volumes", json={"study_uid": "1.2.3", "series_uid": "1.2.3.4"})
    assert response.status_code == 202
    job = wait_done(client, response.json()["id"])
    assert job["status"] == "failed" and job["result"] is None
    assert job["error"].startswith("WADO-RS: the PACS could not be reached")
