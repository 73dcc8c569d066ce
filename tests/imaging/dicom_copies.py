"""Modified copies of real DICOM files, made in memory for the series tests."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

CHEST = "files/ct-series-chest-hu"
J2K = "files/ct-series-jpeg2000"


def series_paths(data_dir: Path, folder: str) -> list[Path]:
    """The DICOM files of a series folder, by name (the name order is not the slice order)."""
    return sorted(p for p in (data_dir / folder).iterdir() if not p.name.endswith(".txt"))


def parse(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    return buffer.getvalue()


def edited(data: bytes, edit: Callable[[Dataset], None]) -> bytes:
    """``data`` parsed, changed by ``edit`` (in place) and written again."""
    ds = parse(data)
    edit(ds)
    return to_bytes(ds)


def hu(data: bytes) -> np.ndarray:
    """float32 HU of one uncompressed slice, computed here with pydicom alone."""
    ds = parse(data)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    return (ds.pixel_array.astype(np.float64) * slope + intercept).astype(np.float32)


def set_pixels(ds: Dataset, pixels: np.ndarray) -> None:
    """Replace an uncompressed dataset's stored pixels (same dtype as its pixel_array)."""
    stored = np.ascontiguousarray(pixels.astype(ds.pixel_array.dtype))
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()


def new_instance(ds: Dataset) -> None:
    """A new SOP Instance UID (a distinct object)."""
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def position(ds: Dataset) -> np.ndarray:
    return np.array([float(v) for v in ds.ImagePositionPatient])
