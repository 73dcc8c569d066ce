"""Shared pieces of the DICOM SEG tests: real files, masks made from their pixels, dciodvfy."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from service.imaging.types import DecodedImage
from service.models.threshold import ThresholdBackend
from service.pipeline.run import run

DICOM = "files/dicom"
CHEST = "files/ct-series-chest-hu"
J2K_SERIES = "files/ct-series-jpeg2000"


def read(data_dir: Path, name: str) -> bytes:
    return (data_dir / DICOM / name).read_bytes()


def series_files(data_dir: Path, folder: str = CHEST) -> list[bytes]:
    return [p.read_bytes() for p in sorted((data_dir / folder).iterdir()) if p.suffix != ".txt"]


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def boxes(frames: int, rows: int, columns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lung and infection masks that differ from frame to frame (one random box each)."""
    rng = np.random.default_rng(seed)
    lung = np.zeros((frames, rows, columns), bool)
    infection = np.zeros_like(lung)
    for k in range(frames):
        top, left = rng.integers(0, rows // 2), rng.integers(0, columns // 2)
        height, width = rng.integers(4, rows // 2), rng.integers(4, columns // 2)
        lung[k, top : top + height, left : left + width] = True
        infection[k, top : top + height // 3, left : left + width // 3] = True
    return lung, infection


def threshold_masks(image: DecodedImage) -> tuple[np.ndarray, np.ndarray]:
    """Lung and infection masks of every frame by the threshold segmenter."""
    frames = run(ThresholdBackend(image.modality or "cxr"), image)
    return (
        np.stack([f.masks.lung for f in frames]),
        np.stack([f.masks.infection for f in frames]),
    )


def segread(content: bytes) -> hd.seg.Segmentation:
    return hd.seg.segread(io.BytesIO(content))


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) that dciodvfy (dicom3tools) reports for a file; the test is skipped
    without it unless LUNGSEG_REQUIRE_PACS=1 (CI installs dicom3tools with Orthanc)."""
    binary = shutil.which("dciodvfy")
    if binary is None:
        reason = "dciodvfy not installed (apt-get install dicom3tools)"
        if os.environ.get("LUNGSEG_REQUIRE_PACS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [binary, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    lines = (done.stdout + done.stderr).splitlines()
    return (
        [line for line in lines if line.startswith("Error")],
        [line for line in lines if line.startswith("Warning")],
    )
