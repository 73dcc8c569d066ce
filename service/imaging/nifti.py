"""NIfTI-1 / NIfTI-2 (``.nii`` or ``.nii.gz`` bytes in memory) -> :class:`Volume` (canonical).

* The format is sniffed from the bytes: gzip (``1f 8b``) is inflated first, in bounded steps,
  refused beyond ``max_pixels * 8`` bytes plus a header allowance; then ``sizeof_hdr`` must be
  348 (NIfTI-1) or 540 (NIfTI-2), either byte order, with a single-file magic (``n+1`` /
  ``n+2``: a ``.hdr`` / ``.img`` pair is refused). Nothing is written to disk.
* nibabel reads the image from memory; the voxel -> patient affine is nibabel's best affine
  (the sform when sform_code > 0, else the qform when qform_code > 0, else the voxel sizes
  alone, with a warning) converted from RAS (NIfTI) to LPS (DICOM).
* scl_slope / scl_inter are applied (nibabel); values are taken as Hounsfield units (CT), with
  a warning when none is below -500 (no air: probably not HU).
* 3-D only (2-D is one slice; a 4-D file with one volume is accepted); NaN / inf refused.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.filebasedimages import ImageFileError
from nibabel.nifti1 import Nifti1Image
from nibabel.nifti2 import Nifti2Image
from nibabel.spatialimages import HeaderDataError, HeaderTypeError

from service.errors import InputTooLargeError, InvalidParameterError, UnsupportedMediaError
from service.imaging.orientation import RAS_FROM_LPS, spacing_of, to_canonical
from service.imaging.raster import check_pixel_limit
from service.imaging.volume import InputLayout, Volume

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE = 348, 540
HEADER_ALLOWANCE = 1 << 20
"""Bytes allowed beyond the voxels when inflating: the header, its extensions and padding."""
_BYTES_PER_VOXEL_BOUND = 8
_CHUNK = 1 << 20
_NOT_HU_BELOW = -500.0
# What nibabel raises on a malformed header or data block (checked on corrupted real files).
_NIBABEL_ERRORS: tuple[type[BaseException], ...] = (
    ImageFileError,
    HeaderDataError,
    HeaderTypeError,
    ValueError,
    TypeError,
    IndexError,
    OverflowError,
    OSError,
    EOFError,
    struct.error,
)


def is_nifti(data: bytes) -> bool:
    """True when ``data`` starts like a ``.nii.gz`` (gzip) or a ``.nii`` (sizeof_hdr)."""
    return data[:2] == GZIP_MAGIC or _header_size(data) is not None


def decode_nifti(data: bytes, *, max_pixels: int) -> Volume:
    """Decode a NIfTI volume to a canonical float32 HU Volume (``source`` None).

    ``to_input`` holds the file's array shape, its affine (``affine_ras`` as stored) and header:
    ``nibabel.Nifti1Image(volume.mask_to_input(mask), volume.to_input.affine_ras,
    volume.to_input.nifti_header)`` lines up with the input voxel for voxel.

    Raises:
        UnsupportedMediaError: not NIfTI, corrupt or truncated, more than one volume, a
            complex / RGB data type, NaN or infinite values, a degenerate affine.
        InputTooLargeError: more than ``max_pixels`` voxels, or a gzip inflating beyond them.
        InvalidParameterError: ``max_pixels`` is not a positive integer.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise InvalidParameterError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    limit = max_pixels * _BYTES_PER_VOXEL_BOUND + HEADER_ALLOWANCE
    raw = _gunzip(data, limit) if data[:2] == GZIP_MAGIC else data
    image_class = _image_class(raw)
    with _nibabel_call("reading the NIfTI header"):
        image = image_class.from_bytes(raw)
        header = image.header
        shape = tuple(int(n) for n in image.shape)
        dtype = np.dtype(header.get_data_dtype())
        proxy = image.dataobj
        offset = int(proxy.offset) if isinstance(proxy, ArrayProxy) else 0
        affine_ras = np.asarray(image.affine, dtype=np.float64)
        codes = int(header["sform_code"]), int(header["qform_code"])
    shape3 = _shape3(shape)
    check_pixel_limit(shape3[1], shape3[2], shape3[0], max_pixels, "the NIfTI volume")
    if dtype.kind not in "biuf":
        raise UnsupportedMediaError(
            f"the NIfTI data type {dtype} is not a scalar intensity: upload a greyscale CT volume"
        )
    if len(raw) < offset + int(np.prod(shape)) * dtype.itemsize:
        raise UnsupportedMediaError("the NIfTI file is truncated: its voxel data is incomplete")
    with _nibabel_call("reading the NIfTI voxels"):
        voxels = np.asarray(image.get_fdata(dtype=np.float32)).reshape(shape3)
    bad = int(np.count_nonzero(~np.isfinite(voxels)))
    if bad:
        raise UnsupportedMediaError(
            f"the NIfTI volume holds {bad} NaN or infinite value(s): upload a CT volume in "
            "Hounsfield units without missing values"
        )
    warnings = _warnings(voxels, codes)
    affine_lps = RAS_FROM_LPS @ affine_ras
    canonical = to_canonical(voxels, affine_lps)
    logger.debug("decoded NIfTI %s -> canonical %s", shape3, canonical.voxels.shape)
    return Volume(
        voxels=canonical.voxels,
        units="hu",
        modality="ct",
        spacing_mm=spacing_of(canonical.affine),
        affine=canonical.affine,
        to_input=InputLayout(
            shape=shape3,
            to_input=canonical.to_input,
            affine=affine_lps,
            nifti_header=header,
        ),
        source_format="nifti",
        source=None,
        warnings=(*warnings, *canonical.warnings),
    )


@contextmanager
def _nibabel_call(what: str) -> Iterator[None]:
    """Run a nibabel call; its errors on bad data raise UnsupportedMediaError naming ``what``."""
    try:
        yield
    except _NIBABEL_ERRORS as exc:
        raise UnsupportedMediaError(
            f"the NIfTI file is corrupt or truncated: {what} failed ({type(exc).__name__})"
        ) from exc


def _gunzip(data: bytes, limit: int) -> bytes:
    """The inflated bytes of every gzip member of ``data``, refused beyond ``limit`` bytes."""
    parts: list[bytes] = []
    total, pending = 0, data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        while True:
            chunk = inflater.decompress(pending, _CHUNK)
            total += len(chunk)
            if total > limit:
                raise InputTooLargeError(
                    f"the .nii.gz expands to more than {limit} bytes, beyond the voxel limit; "
                    "upload a smaller volume"
                )
            parts.append(chunk)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                pending = inflater.unused_data
                if pending[:2] != GZIP_MAGIC:
                    break
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # a further gzip member
            elif not chunk and not pending:
                raise UnsupportedMediaError("the .nii.gz file is truncated")
    except zlib.error as exc:
        raise UnsupportedMediaError("the .nii.gz file is corrupt (gzip error)") from exc
    return b"".join(parts)


def _header_size(raw: bytes) -> int | None:
    if len(raw) < 4:
        return None
    for order in "<>":
        (size,) = struct.unpack(f"{order}i", raw[:4])
        if size in (NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE):
            return int(size)
    return None


def _image_class(raw: bytes) -> type[Nifti1Image]:
    size = _header_size(raw)
    if size is None:
        raise UnsupportedMediaError(
            "not a NIfTI file (no NIfTI-1 / NIfTI-2 header): upload a .nii or .nii.gz volume"
        )
    magic = raw[344:348] if size == NIFTI1_HEADER_SIZE else raw[4:8]
    if magic in (b"ni1\x00", b"ni2\x00"):
        raise UnsupportedMediaError(
            "this is the header of a NIfTI .hdr / .img pair: upload a single .nii or .nii.gz"
        )
    if magic not in (b"n+1\x00", b"n+2\x00"):
        raise UnsupportedMediaError(
            "not a NIfTI file (its header has no NIfTI magic): upload a .nii or .nii.gz volume"
        )
    return Nifti1Image if size == NIFTI1_HEADER_SIZE else Nifti2Image


def _shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The 3-D shape (2-D: one slice; trailing axes of length 1 dropped)."""
    if len(shape) == 2:
        shape = (*shape, 1)
    extra = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if len(shape) < 2 or extra != 1:
        raise UnsupportedMediaError(
            f"the NIfTI image has shape {shape}: upload one 3-D volume (a 4-D file may hold "
            "only one volume)"
        )
    if min(shape) <= 0:
        raise UnsupportedMediaError(f"the NIfTI image is empty (shape {shape})")
    return shape[0], shape[1], shape[2]


def _warnings(voxels: np.ndarray, codes: tuple[int, int]) -> list[str]:
    warnings = []
    if codes == (0, 0):
        warnings.append(
            "the NIfTI header has no orientation (sform and qform codes 0): the voxel sizes "
            "alone are used, so left / right and the patient position are unknown"
        )
    if voxels.size and float(voxels.min()) > _NOT_HU_BELOW:
        warnings.append(
            f"no value is below {_NOT_HU_BELOW:.0f}: the volume is probably not in Hounsfield "
            "units, and the CT models expect HU"
        )
    return warnings
