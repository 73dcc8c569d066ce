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
from service.imaging.archive import read_members
from service.imaging.nifti import is_nifti
from service.imaging.sniff import DICOM_PREFIX, DICOM_PREFIX_OFFSET

MAX_ZIP_BYTES = 8 << 30
MAX_ZIP_FILES = 50_000
ZIP_MAGIC = b"PK\x03\x04"


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
        return Input("volume", _drop_other_files(files))
    data = path.read_bytes()
    if data[:4] == ZIP_MAGIC and zipfile.is_zipfile(path):
        members = read_members(data, max_bytes=MAX_ZIP_BYTES, max_files=MAX_ZIP_FILES)
        if not members:
            raise InvalidInputError("the zip holds no files: zip the DICOM files of one series")
        return Input("volume", _drop_other_files([m.data for m in members]))
    if is_nifti(data):
        return Input("volume", [data])
    return Input("image", [data])


def _regular_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


def _drop_other_files(files: list[bytes]) -> list[bytes]:
    """A folder or zip with one NIfTI and no DICOM file (beside a README, a licence): the NIfTI."""
    volumes = [data for data in files if is_nifti(data)]
    dicom = any(
        data[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] == DICOM_PREFIX for data in files
    )
    return volumes if len(volumes) == 1 and not dicom else files
