"""``/v1/volumes``: uploads (several parts, a zip, a NIfTI) become jobs (202 + Location), their
status, progress and measures, and their files (NIfTI mask with the input's geometry, per-slice
RLE, DICOM SEG, FHIR, rendered slices); 404 / 409 / 422 / 503 where they belong."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

from service.pipeline.volume import INFECTION, LUNG
from tests.api.conftest import rle_to_mask
from tests.api.test_errors import assert_problem
from tests.api.volume_helpers import (
    NIFTI,
    chest_paths,
    nifti_of,
    post_volume,
    wait_done,
    zipped,
)
from tests.encoders.seg_helpers import segread
from tests.imaging.dicom_copies import edited, new_instance


@pytest.fixture
def volumes(make_client):
    return make_client(default_model="threshold")


def test_a_nifti_upload_is_a_job_with_its_measures_and_files(volumes, data_dir: Path) -> None:
    stored = (data_dir / NIFTI).read_bytes()
    response = post_volume(volumes, [("ct.nii.gz", stored)])
    assert response.status_code == 202, response.text
    queued = response.json()
    assert response.headers["location"] == f"/v1/volumes/{queued['id']}"
    assert queued["status"] in ("queued", "running", "done") and queued["source"] == "upload"
    job = wait_done(volumes, queued["id"])
    assert job["status"] == "done", job["error"]
    assert job["progress"] == {"done": 30, "total": 30}
    result = job["result"]
    assert result["n_slices"] == 30 and result["source_format"] == "nifti"
    assert result["input_shape"] == [122, 101, 30] and result["spacing_mm"] == [3.0, 3.0, 3.0]
    lungs = result["lungs"]
    total = lungs["left"]["volume_ml"] + lungs["right"]["volume_ml"]
    assert total == pytest.approx(result["lung_volume_ml"], abs=0.01)
    assert result["lung_found"] is True and result["model"]["kind"] == "threshold"
    assert len(result["slices"]) == 30 and result["slices"][0]["index"] == 0
    assert [s["z_mm"] for s in result["slices"]] == sorted(s["z_mm"] for s in result["slices"])
    assert result["preview"] == {"rows": 101, "columns": 122}
    assert result["store"] is None and "Research use" in result["research_use"]
    names = {a["name"] for a in job["artifacts"]}
    assert names >= {"mask.nii.gz", "slices.json", "fhir.json", "preview.bin"}
    assert "seg.dcm" not in names

    base = f"/v1/volumes/{job['id']}"
    mask = volumes.get(f"{base}/mask")
    assert mask.status_code == 200 and mask.headers["content-type"] == "application/gzip"
    source = nib.Nifti1Image.from_bytes(gzip.decompress(stored))
    labels = nifti_of(mask.content)
    assert labels.shape == source.shape
    np.testing.assert_array_equal(labels.affine, source.affine)
    voxels = np.asanyarray(labels.dataobj)
    lung_ml = float((voxels >= LUNG).sum()) * result["voxel_ml"]
    assert lung_ml == pytest.approx(result["lung_volume_ml"], rel=1e-6)

    rle = volumes.get(f"{base}/mask", params={"format": "rle"}).json()
    assert rle["layout"] == "input" and rle["slice_axis"] == 2 and len(rle["slices"]) == 30
    for entry in rle["slices"][::7]:
        plane = voxels[:, :, entry["index"]]
        assert np.array_equal(rle_to_mask(entry["lung"]), plane >= LUNG)
        assert np.array_equal(rle_to_mask(entry["infection"]), plane == INFECTION)
    canonical = volumes.get(f"{base}/mask", params={"format": "rle", "layout": "canonical"})
    rows = canonical.json()["slices"]
    areas = [int(rle_to_mask(s["lung"]).sum()) for s in rows]
    assert areas == [s["lung_area_px"] for s in result["slices"]]

    assert_problem(volumes.get(f"{base}/seg"), 409, "NIfTI")
    bundle = volumes.get(f"{base}/fhir")
    assert bundle.headers["content-type"] == "application/fhir+json"
    kinds = [e["resource"]["resourceType"] for e in bundle.json()["entry"]]
    assert "DiagnosticReport" in kinds and kinds.count("Observation") >= 9  # 3 x (both, L, R)

    png = volumes.get(f"{base}/slices/15.png", params={"window": "mediastinum"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    import cv2

    image = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (101, 122) and image.dtype == np.uint8
    assert_problem(volumes.get(f"{base}/slices/30.png"), 404, "no slice 30")
    listed = volumes.get("/v1/volumes").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["result"]["slices"] is None


def test_a_zip_of_the_chest_series_with_other_files(volumes, data_dir: Path) -> None:
    paths = chest_paths(data_dir)
    files = {f"series/{p.name}": p.read_bytes() for p in paths}

    def report(ds: pydicom.Dataset) -> None:  # a non-image object of the same study
        new_instance(ds)
        del ds.PixelData, ds.Rows, ds.Columns
        ds.Modality, ds.SOPClassUID = "SR", "1.2.840.10008.5.1.4.1.1.88.22"

    sr = edited(paths[0].read_bytes(), report)
    files |= {"README.txt": b"not dicom", "sr.dcm": sr}
    response = volumes.post(
        "/v1/volumes", content=zipped(files), headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 202, response.text
    job = wait_done(volumes, response.json()["id"])
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert result["files"] == 66 and result["n_slices"] == 64
    assert result["skipped"]["non_image"] == 1 and result["skipped"]["not_dicom"] == 1
    assert 4000 < result["lung_volume_ml"] < 7000
    base = f"/v1/volumes/{job['id']}"
    labels = np.asanyarray(nifti_of(volumes.get(f"{base}/mask").content).dataobj)
    assert labels.shape == (512, 512, 64)  # the DICOM grid: column, row, slice

    seg = volumes.get(f"{base}/seg")
    assert seg.status_code == 200 and seg.headers["content-type"] == "application/dicom"
    segmentation = segread(seg.content)
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
    assert {u[2] for u in segmentation.get_source_image_uids()} == set(uids)
    rle = volumes.get(f"{base}/mask", params={"format": "rle"}).json()
    by_upload = {entry["upload_index"]: entry for entry in rle["slices"]}
    order = sorted(range(64), key=lambda i: paths[i].name)  # the zip's member order
    pixels = segmentation.get_pixels_by_source_instance(uids)
    for k in (0, 20, 40, 63):
        entry = by_upload[order.index(k)]
        assert np.array_equal(pixels[k, ..., 0].astype(bool), rle_to_mask(entry["lung"]))
        assert np.array_equal(pixels[k, ..., 1].astype(bool), rle_to_mask(entry["infection"]))


def test_several_parts_and_a_choice_of_series(volumes, data_dir: Path) -> None:
    chosen = [p.read_bytes() for p in chest_paths(data_dir)[28:36]]
    other = edited(
        chosen[0], lambda ds: (new_instance(ds), setattr(ds, "SeriesInstanceUID", "1.2.3.4"))
    )
    parts = [(f"{i}.dcm", data) for i, data in enumerate([*chosen, other])]
    refused = post_volume(volumes, parts)
    body = assert_problem(refused, 422, "choose one with series_uid")
    listed = {s["series_uid"]: s for s in body["series"]}
    assert listed["1.2.3.4"]["instances"] == 1 and listed["1.2.3.4"]["modality"] == "CT"
    (series_uid,) = set(listed) - {"1.2.3.4"}
    assert listed[series_uid]["instances"] == 8
    response = post_volume(volumes, parts, series_uid=series_uid)
    assert response.status_code == 202
    job = wait_done(volumes, response.json()["id"])
    assert job["result"]["n_slices"] == 8 and job["result"]["skipped"]["other_series"] == 1


def test_small_volumes_may_answer_at_once(make_client, data_dir: Path) -> None:
    client = make_client(default_model="threshold", volume_sync_max_slices=30)
    response = post_volume(client, [("ct.nii.gz", (data_dir / NIFTI).read_bytes())])
    assert response.status_code == 200 and response.json()["status"] == "done"
    assert response.json()["result"]["n_slices"] == 30


def test_refusals(volumes, make_client, data_dir: Path) -> None:
    stored = (data_dir / NIFTI).read_bytes()
    pacs = {"study_uid": "1.2.3", "series_uid": "1.2.3.4"}
    assert_problem(volumes.post("/v1/volumes", json=pacs), 422, "no PACS is configured")
    assert_problem(volumes.post("/v1/volumes", json={"study_uid": "x"}), 422, "series_uid")
    assert_problem(post_volume(volumes, [("a", stored)], store="true"), 422, "none is configured")
    assert_problem(post_volume(volumes, [("a", stored)], model="nope"), 422, "not installed")
    assert_problem(post_volume(volumes, [("a.txt", b"text")]), 415, "no DICOM image")
    assert_problem(volumes.get("/v1/volumes/nope"), 404, "no volume job")
    queued = volumes.app.state.volumes.store.create(
        "q1", {"source": "upload", "client": "anonymous"}
    )
    assert queued["status"] == "queued"
    assert_problem(volumes.get("/v1/volumes/q1/mask"), 409, "retry when")
    small = make_client(volume_max_upload_bytes=len(stored) - 1)
    assert_problem(post_volume(small, [("a", stored)]), 413, "exceeds")


def test_a_full_queue_refuses_before_reading(make_client, data_dir: Path) -> None:
    client = make_client(volume_max_pending=1)
    place = client.app.state.volumes.reserve()
    try:
        response = post_volume(client, [("ct.nii.gz", (data_dir / NIFTI).read_bytes())])
        assert_problem(response, 503, "LUNGSEG_VOLUME_MAX_PENDING")
        assert response.headers["retry-after"] == "30"
    finally:
        place.release()


def test_results_expire(make_client, data_dir: Path) -> None:
    client = make_client(default_model="threshold", result_ttl_s=1.0)
    response = post_volume(client, [("ct.nii.gz", (data_dir / NIFTI).read_bytes())])
    job = wait_done(client, response.json()["id"])
    assert job["status"] == "done"
    import time

    time.sleep(1.2)
    assert_problem(client.get(f"/v1/volumes/{job['id']}"), 404, "expired")
    assert_problem(client.get(f"/v1/volumes/{job['id']}/mask"), 404, "expired")


def test_the_uploads_are_read_in_memory_only(volumes, data_dir: Path, monkeypatch) -> None:
    import tempfile

    rolled: list[int] = []
    original = tempfile.SpooledTemporaryFile.rollover

    def record(self: tempfile.SpooledTemporaryFile) -> None:
        rolled.append(1)
        original(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", record)
    parts = [(p.name, p.read_bytes()) for p in chest_paths(data_dir)[30:34]]  # 2 MiB
    response = post_volume(volumes, parts)
    assert response.status_code == 202 and rolled == []
    assert wait_done(volumes, response.json()["id"])["status"] == "done"


def test_jobs_are_their_clients_own(make_client, data_dir: Path, tmp_path: Path) -> None:
    import hashlib

    keys = {"a": "key-a-" + "x" * 20, "b": "key-b-" + "y" * 20, "root": "key-r-" + "z" * 20}
    scopes = {"a": "segment", "b": "segment", "root": "admin"}
    lines = [f"{n} {hashlib.sha256(k.encode()).hexdigest()} {scopes[n]}" for n, k in keys.items()]
    (tmp_path / "keys").write_text("\n".join(lines) + "\n")
    client = make_client(default_model="threshold", api_keys_file=tmp_path / "keys")

    def auth(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    stored = (data_dir / NIFTI).read_bytes()
    response = client.post("/v1/volumes", files={"file": ("ct", stored)}, headers=auth("a"))
    job_id = response.json()["id"]
    assert client.post("/v1/volumes", files={"file": ("ct", stored)}).status_code == 401
    assert client.get(f"/v1/volumes/{job_id}", headers=auth("b")).status_code == 404
    assert client.get("/v1/volumes", headers=auth("b")).json()["jobs"] == []
    assert client.get(f"/v1/volumes/{job_id}", headers=auth("a")).status_code == 200
    assert [j["id"] for j in client.get("/v1/volumes", headers=auth("root")).json()["jobs"]] == [
        job_id
    ]


def test_a_shutdown_interrupts_the_running_job(make_client, data_dir: Path, monkeypatch) -> None:
    import threading

    from service.volumes import jobs

    started, release = threading.Event(), threading.Event()

    def stuck(self, job_id, request, payload):
        started.set()
        release.wait(20)
        raise jobs.JobStopped(job_id)

    monkeypatch.setattr(jobs.VolumeJobs, "_segment", stuck)
    client = make_client()
    response = post_volume(client, [("ct.nii.gz", (data_dir / NIFTI).read_bytes())])
    started.wait(10)
    store = client.app.state.volumes.store
    client.app.state.volumes.shutdown()
    assert store.get(response.json()["id"])["status"] == "interrupted"
    release.set()
