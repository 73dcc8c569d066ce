"""decode_nifti on the real example CT and on copies saved here in other orientations, dtypes,
header variants, and broken or oversized forms."""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import (
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from service.errors import InputTooLargeError, LungsegError, UnsupportedMediaError
from service.imaging.nifti import decode_nifti, is_nifti
from service.imaging.orientation import RAS_FROM_LPS

MAX_PIXELS = 10_000_000
EXAMPLE = "files/nifti/example_ct_sm.nii.gz"


@pytest.fixture(scope="module")
def example(data_dir: Path) -> nib.Nifti1Image:
    raw = gzip.decompress((data_dir / EXAMPLE).read_bytes())
    return nib.Nifti1Image.from_bytes(raw)


def _saved(data: np.ndarray, affine: np.ndarray, *, compress: bool = True, **header) -> bytes:
    image = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        image.header[key] = value
    raw = image.to_bytes()
    return gzip.compress(raw) if compress else raw


def _reoriented(image: nib.Nifti1Image, codes: tuple[str, str, str]):
    """The same volume stored with axes ``codes`` (nibabel: apply_orientation + its affine)."""
    data = np.asanyarray(image.dataobj)
    transform = ornt_transform(io_orientation(image.affine), axcodes2ornt(codes))
    return apply_orientation(data, transform), image.affine @ inv_ornt_aff(transform, data.shape)


def test_real_example(data_dir: Path, example: nib.Nifti1Image) -> None:
    data = (data_dir / EXAMPLE).read_bytes()
    assert is_nifti(data)
    volume = decode_nifti(data, max_pixels=MAX_PIXELS)
    assert volume.shape == (30, 101, 122) and volume.voxels.dtype == np.float32
    assert volume.spacing_mm == (3.0, 3.0, 3.0) and volume.source is None
    assert (float(volume.voxels.min()), float(volume.voxels.max())) == (-1100.0, 1207.0)
    # stored RAS: i -> right-to-left flipped (R), j -> A, k -> S; canonical is (S, P, L)
    stored = np.asanyarray(example.dataobj).astype(np.float32)
    assert np.array_equal(volume.voxels, stored[::-1, ::-1, :].transpose(2, 1, 0))
    lps = RAS_FROM_LPS @ example.affine
    np.testing.assert_allclose(volume.to_input.affine, lps)
    np.testing.assert_allclose(volume.to_input.affine_ras, example.affine)
    corner = lps @ np.array([121.0, 100.0, 0.0, 1.0])  # canonical (0, 0, 0)
    np.testing.assert_allclose(volume.affine[:3, 3], corner[:3])
    assert volume.to_input.shape == (122, 101, 30) and volume.warnings == ()
    assert volume.to_input.nifti_header is not None
    assert np.array_equal(volume.mask_to_input(volume.voxels), stored)


@pytest.mark.parametrize(
    "codes",
    [
        ("L", "P", "S"),  # LPS
        ("L", "A", "S"),  # LAS
        ("A", "S", "R"),  # transposed axes
        ("R", "A", "I"),  # reversed slice order
        ("S", "L", "P"),
    ],
)
def test_orientations_give_the_same_canonical_volume(example, codes) -> None:
    reference = decode_nifti(
        _saved(np.asanyarray(example.dataobj), example.affine), max_pixels=MAX_PIXELS
    )
    data, affine = _reoriented(example, codes)
    assert nib.aff2axcodes(affine) == codes
    volume = decode_nifti(_saved(data, affine, compress=codes[0] != "L"), max_pixels=MAX_PIXELS)
    assert np.array_equal(volume.voxels, reference.voxels)
    np.testing.assert_allclose(volume.affine, reference.affine, atol=1e-6)
    assert volume.spacing_mm == reference.spacing_mm
    mask = np.random.default_rng(3).integers(0, 4, volume.shape).astype(np.uint8)
    back = volume.mask_to_input(mask)
    assert back.shape == data.shape and back.dtype == np.uint8
    transform = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(codes))
    assert np.array_equal(back, apply_orientation(reference.mask_to_input(mask), transform))
    assert np.array_equal(volume.mask_to_input(volume.voxels), data.astype(np.float32))


def test_scaling_and_affine_choice() -> None:
    stored = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    sform, qform = np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([-1.0, 1.0, 1.0, 1.0])
    image = nib.Nifti1Image(stored, None)
    image.header.set_sform(sform, code=1)
    image.header.set_qform(qform, code=1)
    image.header.set_slope_inter(2.0, -1000.0)
    volume = decode_nifti(image.to_bytes(), max_pixels=MAX_PIXELS)
    assert np.array_equal(volume.mask_to_input(volume.voxels), stored * 2.0 - 1000.0)
    np.testing.assert_allclose(volume.to_input.affine_ras, sform)  # sform_code > 0 wins
    image.header.set_sform(sform, code=0)
    volume = decode_nifti(image.to_bytes(), max_pixels=MAX_PIXELS)
    np.testing.assert_allclose(volume.to_input.affine_ras, qform)
    assert volume.spacing_mm == (1.0, 1.0, 1.0)


def test_no_orientation_and_not_hu_are_warnings() -> None:
    image = nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), None)
    image.header.set_sform(None, code=0)
    image.header.set_qform(None, code=0)
    warnings = decode_nifti(image.to_bytes(), max_pixels=MAX_PIXELS).warnings
    assert len(warnings) == 2
    assert "no orientation" in warnings[0] and "not in Hounsfield units" in warnings[1]


def test_dimensions() -> None:
    affine = np.eye(4)
    one = decode_nifti(_saved(np.zeros((3, 4, 5, 1), np.int16), affine), max_pixels=MAX_PIXELS)
    assert one.to_input.shape == (3, 4, 5) and one.shape == (5, 4, 3)
    flat = decode_nifti(_saved(np.zeros((3, 4), np.int16), affine), max_pixels=MAX_PIXELS)
    assert flat.shape == (1, 4, 3)
    with pytest.raises(UnsupportedMediaError, match=r"shape \(3, 4, 5, 2\).*one 3-D volume"):
        decode_nifti(_saved(np.zeros((3, 4, 5, 2), np.int16), affine), max_pixels=MAX_PIXELS)
    nifti2 = nib.Nifti2Image(np.ones((2, 3, 4), np.float32) * -1000, affine).to_bytes()
    assert decode_nifti(nifti2, max_pixels=MAX_PIXELS).shape == (4, 3, 2)


def test_non_finite_values_are_refused() -> None:
    data = np.zeros((2, 2, 2), np.float32)
    data[1, 0, 1] = np.nan
    data[0, 0, 0] = np.inf
    with pytest.raises(UnsupportedMediaError, match="2 NaN or infinite"):
        decode_nifti(_saved(data, np.eye(4)), max_pixels=MAX_PIXELS)


def test_limits_and_bombs() -> None:
    zeros = np.zeros((100, 100, 100), np.int16)  # 2 MB, gzips to a few kB
    bomb = _saved(zeros, np.eye(4))
    assert len(bomb) < 20_000
    with pytest.raises(InputTooLargeError, match="expands to more than"):
        decode_nifti(bomb, max_pixels=1000)
    with pytest.raises(InputTooLargeError, match="more than the limit of 999999"):
        decode_nifti(_saved(zeros, np.eye(4), compress=False), max_pixels=999_999)
    assert decode_nifti(bomb, max_pixels=1_000_000).shape == (100, 100, 100)


def test_broken_files_are_refused() -> None:
    raw = _saved(np.full((4, 4, 4), -1000, np.int16), np.eye(4), compress=False)
    with pytest.raises(UnsupportedMediaError, match="truncated"):
        decode_nifti(raw[:-10], max_pixels=MAX_PIXELS)
    with pytest.raises(UnsupportedMediaError, match="truncated"):
        decode_nifti(gzip.compress(raw)[:-30], max_pixels=MAX_PIXELS)
    with pytest.raises(UnsupportedMediaError, match="corrupt"):
        decode_nifti(b"\x1f\x8b" + b"\x00" * 40, max_pixels=MAX_PIXELS)
    with pytest.raises(UnsupportedMediaError, match="not a NIfTI file"):
        decode_nifti(b"DICM and more bytes", max_pixels=MAX_PIXELS)
    pair = raw[:344] + b"ni1\x00" + raw[348:]
    with pytest.raises(UnsupportedMediaError, match=r"\.hdr / \.img pair"):
        decode_nifti(pair, max_pixels=MAX_PIXELS)
    complex_image = nib.Nifti1Image(np.zeros((2, 2, 2), np.complex64), np.eye(4)).to_bytes()
    with pytest.raises(UnsupportedMediaError, match="not a scalar intensity"):
        decode_nifti(complex_image, max_pixels=MAX_PIXELS)
    bad_dims = raw[:40] + struct.pack("<h", 9) + raw[42:]  # dim[0] = 9 (at most 7)
    with pytest.raises(UnsupportedMediaError, match="NIfTI"):
        decode_nifti(bad_dims, max_pixels=MAX_PIXELS)
    assert not is_nifti(io.BytesIO(b"\x00\x01").getvalue())


def test_corrupted_files_raise_domain_errors_only(data_dir: Path) -> None:
    original = (data_dir / EXAMPLE).read_bytes()
    raw = gzip.decompress(original)
    rng = np.random.default_rng(11)
    for trial in range(60):
        data = bytearray(raw if trial % 2 else original)
        if trial % 3 == 0:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            for where in rng.integers(0, min(len(data), 400), 8):
                data[int(where)] = int(rng.integers(0, 256))
        with contextlib.suppress(LungsegError):
            decode_nifti(bytes(data), max_pixels=MAX_PIXELS)
