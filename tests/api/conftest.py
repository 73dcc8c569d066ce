"""Helpers of the HTTP tests (the app fixtures, ``make_client`` and ``client``, are in
``tests/conftest.py`` for every suite)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a response RLE with pycocotools itself (the reference implementation)."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """Zip a folder in memory (entries under ``prefix``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + str(path.relative_to(folder)))
    return buffer.getvalue()
