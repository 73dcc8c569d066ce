"""The files of one volume as uploaded: zips expanded in memory within one budget, a lone NIfTI
picked out of other files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from service.errors import BadArchiveError, InputTooLargeError, InvalidInputError
from service.imaging.volume_files import volume_files

NIFTI = "files/nifti/example_ct_sm.nii.gz"
CHEST = "files/ct-series-chest-hu"


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zips_are_expanded_in_place_and_plain_files_kept(data_dir: Path) -> None:
    slices = sorted((data_dir / CHEST).glob("*.dcm"))[:3]
    raw = [p.read_bytes() for p in slices]
    packed = _zip({"a/1.dcm": raw[0], "a/2.dcm": raw[1]})
    assert volume_files([packed, raw[2]], max_bytes=10**8, max_files=10) == raw


def test_a_nifti_with_a_readme_is_the_nifti(data_dir: Path) -> None:
    nifti = (data_dir / NIFTI).read_bytes()
    assert volume_files(
        [_zip({"README": b"x", "ct.nii.gz": nifti})], max_bytes=10**8, max_files=9
    ) == [nifti]


def test_the_budget_covers_every_file_together(data_dir: Path) -> None:
    files = [p.read_bytes() for p in sorted((data_dir / CHEST).glob("*.dcm"))[:4]]
    size = sum(len(f) for f in files)
    with pytest.raises(InputTooLargeError, match="bytes in all"):
        volume_files(files, max_bytes=size - 1, max_files=10)
    with pytest.raises(InputTooLargeError, match="more than 3 files"):
        volume_files(files, max_bytes=size, max_files=3)
    with pytest.raises(BadArchiveError):  # a zip beyond what is left of the budget
        volume_files([files[0], _zip({"b": files[1]})], max_bytes=len(files[0]) + 10, max_files=9)


def test_an_empty_zip_is_no_volume() -> None:
    with pytest.raises(InvalidInputError, match="no files"):
        volume_files([_zip({})], max_bytes=100, max_files=9)
