"""Helpers of the volume route tests: upload, wait for a job, read the files back."""

from __future__ import annotations

import gzip
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import nibabel as nib
from fastapi.testclient import TestClient

CHEST = "files/ct-series-chest-hu"
NIFTI = "files/nifti/example_ct_sm.nii.gz"


def chest_paths(data_dir: Path) -> list[Path]:
    return sorted((data_dir / CHEST).glob("*.dcm"))


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def wait_done(client: Any, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    """Poll ``GET /v1/volumes/{id}`` (a TestClient or an httpx.Client) until it ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/volumes/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job['progress']}"
        time.sleep(0.2)


def post_volume(client: TestClient, files: list[tuple[str, bytes]], **params: Any) -> Any:
    return client.post(
        "/v1/volumes", files=[("file", item) for item in files], params=params or None
    )


def nifti_of(content: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(gzip.decompress(content))
