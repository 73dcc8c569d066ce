"""The files of one volume, as a client hands them over: zips expanded in memory, a lone NIfTI
picked out of a folder's other files.

Used by ``POST /v1/volumes`` (the parts of an upload) and the ``lungseg`` command (a folder or a
zip): each given file that is a zip is replaced by its regular files (read with the archive
guards of :func:`service.imaging.archive.iter_members`, within one byte and one file budget for
the whole upload); then, when the files hold exactly one NIfTI and no DICOM (a NIfTI zipped
with a README), that NIfTI alone. Everything else goes to the series assembly, which skips
non-DICOM and non-image files and counts them.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from service.errors import InputTooLargeError, InvalidInputError
from service.imaging.archive import iter_members
from service.imaging.nifti import is_nifti
from service.imaging.sniff import DICOM_PREFIX, DICOM_PREFIX_OFFSET

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a first entry, or an empty archive


def is_zip(data: bytes) -> bool:
    """A zip archive by its leading bytes."""
    return data[:4] in ZIP_MAGIC


def is_dicom_file(data: bytes) -> bool:
    """A DICOM file with the ``DICM`` prefix."""
    return data[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] == DICOM_PREFIX


def volume_files(files: Sequence[bytes], *, max_bytes: int, max_files: int) -> list[bytes]:
    """The files of one volume (see the module docstring), in the order given (a zip's
    members in archive order, at its place).

    Raises:
        BadArchiveError: a broken or unsafe zip, or one expanding beyond the budget.
        InputTooLargeError: more than ``max_files`` files, or ``max_bytes`` bytes in all.
        InvalidInputError: no file at all (an empty zip).
    """
    out: list[bytes] = []
    total = 0
    for data in files:
        if is_zip(data) and zipfile.is_zipfile(io.BytesIO(data)):
            budget, room = max_bytes - total, max_files - len(out)
            members = iter_members(data, max_bytes=max(budget, 0), max_files=max(room, 0))
            for member in members:
                out.append(member.data)
                total += len(member.data)
        else:
            out.append(data)
            total += len(data)
        if len(out) > max_files:
            raise InputTooLargeError(f"the upload holds more than {max_files} files")
        if total > max_bytes:
            raise InputTooLargeError(f"the upload's files exceed {max_bytes} bytes in all")
    if not out:
        raise InvalidInputError(
            "the upload holds no files: send the DICOM files of one series (or a zip of them), "
            "or one NIfTI file"
        )
    return lone_nifti(out)


def lone_nifti(files: list[bytes]) -> list[bytes]:
    """Files with one NIfTI and no DICOM file (beside a README, a licence): the NIfTI."""
    volumes = [data for data in files if is_nifti(data)]
    dicom = any(is_dicom_file(data) for data in files)
    return volumes if len(volumes) == 1 and not dicom else files
