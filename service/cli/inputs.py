"""What ``lungseg segment`` reads: each INPUT argument becomes one image or one volume.

* a folder: every regular file under it (recursively, by path) is one DICOM series (non-DICOM
  files and non-image objects are skipped by the series assembly), or the one NIfTI file in it;
* a zip file: its members, read in memory with the archive guards
  (:func:`service.imaging.archive.read_members`), as a folder;
* a ``.nii`` / ``.nii.gz`` file (sniffed from the bytes): a volume;
* any other file: one image (DICOM, PNG or JPEG), segmented as ``POST /v1/segment`` does.

Paths and entry names are kept for reading only: they may hold patient names, so they are never
printed (inputs are numbered in the order given).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.errors import InvalidInputError
from service.imaging.nifti import is_nifti
from service.imaging.volume_files import is_zip, lone_nifti, volume_files

MAX_ZIP_BYTES = 8 << 30
MAX_ZIP_FILES = 50_000


@dataclass(frozen=True, repr=False)
class Input:
    """One input: ``kind`` ``"image"`` (``files`` holds one file) or ``"volume"``."""

    kind: Literal["image", "volume"]
    files: list[bytes]

    def __repr__(self) -> str:
        return f"Input({self.kind}, {len(self.files)} file(s))"


def read_input(path: Path) -> Input:
    """Read one INPUT argument (see the module rules).

    Raises:
        OSError: the path cannot be read. BadArchiveError: a broken or unsafe zip.
        InvalidInputError: an empty folder.
    """
    if path.is_dir():
        files = [p.read_bytes() for p in sorted(_regular_files(path))]
        if not files:
            raise InvalidInputError("the folder holds no files: give a folder of DICOM files")
        return Input("volume", lone_nifti(files))
    data = path.read_bytes()
    if is_zip(data) and zipfile.is_zipfile(path):
        files = volume_files([data], max_bytes=MAX_ZIP_BYTES, max_files=MAX_ZIP_FILES)
        return Input("volume", files)
    if is_nifti(data):
        return Input("volume", [data])
    return Input("image", [data])


def _regular_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
