"""assemble_series on real CT series and copies of them made here (shuffled, gaps, duplicates,
tilt, mixed sizes, two series, non-image objects, localizers, zip, flipped rows)."""

from __future__ import annotations

import contextlib
import io
import logging
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from service.errors import (
    BadArchiveError,
    EmptyInputError,
    InputTooLargeError,
    LungsegError,
    SeriesChoiceError,
    SeriesError,
    UnsupportedMediaError,
    UnsupportedModalityError,
)
from service.imaging import series as series_module
from service.imaging.archive import read_members
from service.imaging.dicom import decode_dicom
from service.imaging.series import assemble_series
from tests.imaging.dicom_copies import (
    CHEST,
    J2K,
    edited,
    hu,
    new_instance,
    parse,
    position,
    series_paths,
    set_pixels,
)

MAX_PIXELS = 80_000_000
PIXEL = 0.841796875  # mm, the chest series' PixelSpacing


@pytest.fixture(scope="module")
def chest(data_dir: Path) -> list[bytes]:
    """The 64 chest slices, in file-name order (1-01 is the most superior, z = -124 mm)."""
    return [p.read_bytes() for p in series_paths(data_dir, CHEST)]


@pytest.fixture(scope="module")
def sub(chest: list[bytes]) -> list[bytes]:
    """Slices 1-01 .. 1-08 (z -124 .. -159 mm, 5 mm apart)."""
    return chest[:8]


@pytest.fixture(scope="module")
def sub_hu(sub: list[bytes]) -> np.ndarray:
    """The expected canonical voxels of ``sub``: inferior (1-08) first."""
    return np.stack([hu(data) for data in reversed(sub)])


def test_whole_chest_series(chest: list[bytes]) -> None:
    volume = assemble_series(chest, max_pixels=MAX_PIXELS)
    assert volume.shape == (64, 512, 512) and volume.voxels.dtype == np.float32
    assert volume.units == "hu" and volume.modality == "ct" and volume.source_format == "dicom"
    assert volume.spacing_mm == (5.0, PIXEL, PIXEL)
    expected_affine = np.array(
        [
            [0.0, 0.0, PIXEL, -228.036842],
            [0.0, PIXEL, 0.0, -93.0631599],
            [5.0, 0.0, 0.0, -439.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(volume.affine, expected_affine, atol=1e-9)
    # inferior -> superior: canonical slice 0 is file 1-64 (z = -439 mm), slice 63 is 1-01
    assert np.array_equal(volume.voxels[0], hu(chest[63]))
    assert np.array_equal(volume.voxels[63], hu(chest[0]))
    assert np.array_equal(volume.voxels[20], hu(chest[43]))
    assert volume.to_input.file_index == tuple(range(63, -1, -1))
    assert volume.source is not None
    uids = [str(parse(chest[i]).SOPInstanceUID) for i in range(63, -1, -1)]
    assert volume.source.instance_uids == tuple(uids)
    assert volume.source.frame_numbers == (1,) * 64 and len(volume.source.headers) == 64
    assert "PixelData" not in volume.source.headers[0]
    assert volume.source.series_uid == str(parse(chest[0]).SeriesInstanceUID)
    assert volume.skipped == {} and volume.warnings == ()
    assert float(volume.voxels.min()) == -1024.0


def test_shuffled_series_gives_the_same_volume(chest: list[bytes]) -> None:
    reference = assemble_series(chest, max_pixels=MAX_PIXELS)
    order = list(range(64))
    random.Random(14).shuffle(order)
    shuffled = assemble_series([chest[i] for i in order], max_pixels=MAX_PIXELS)
    assert np.array_equal(shuffled.voxels, reference.voxels)
    assert np.array_equal(shuffled.affine, reference.affine)
    assert shuffled.source is not None and reference.source is not None
    assert shuffled.source.instance_uids == reference.source.instance_uids
    assert [order[i] for i in shuffled.to_input.file_index] == list(reference.to_input.file_index)


def test_mask_to_input_is_in_position_order(sub: list[bytes], sub_hu: np.ndarray) -> None:
    volume = assemble_series(sub[::-1], max_pixels=MAX_PIXELS)
    mask = np.random.default_rng(0).integers(0, 2, volume.shape, dtype=np.uint8)
    back = volume.mask_to_input(mask)
    assert back.shape == (8, 512, 512) and back.dtype == np.uint8
    assert np.array_equal(back, mask)  # axial, not flipped: the input stack is canonical
    assert np.array_equal(volume.voxels, sub_hu)
    with pytest.raises(ValueError, match="shape"):
        volume.mask_to_input(mask[:4])


def test_single_slice(sub: list[bytes]) -> None:
    volume = assemble_series(sub[:1], max_pixels=MAX_PIXELS)
    assert volume.shape == (1, 512, 512) and volume.spacing_mm == (5.0, PIXEL, PIXEL)
    assert np.array_equal(volume.voxels[0], hu(sub[0]))


def test_missing_slice_is_refused(sub: list[bytes]) -> None:
    with pytest.raises(SeriesError, match=r"slices are missing: a gap of 10\.00 mm.*5\.00 mm"):
        assemble_series(sub[:3] + sub[4:], max_pixels=MAX_PIXELS)
    ends_dropped = assemble_series(sub[1:-1], max_pixels=MAX_PIXELS)  # not a gap
    assert ends_dropped.shape[0] == 6 and ends_dropped.warnings == ()


def test_irregular_spacing_within_bounds_is_a_warning(sub: list[bytes]) -> None:
    def moved(ds):  # slice 1-04 one mm up: gaps 4 and 6 mm around it
        ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(position(ds)[2]) + 1.0]

    volume = assemble_series([*sub[:3], edited(sub[3], moved), *sub[4:]], max_pixels=MAX_PIXELS)
    assert any("irregular slice spacing (4.00 to 6.00 mm)" in w for w in volume.warnings)
    assert volume.spacing_mm[0] == pytest.approx(5.0)


def test_duplicates(sub: list[bytes], sub_hu: np.ndarray) -> None:
    copy = edited(sub[2], new_instance)  # same pixels and position, another instance UID
    volume = assemble_series([*sub, sub[5], copy], max_pixels=MAX_PIXELS)
    assert np.array_equal(volume.voxels, sub_hu)
    assert volume.skipped == {"duplicate": 2}
    assert volume.warnings == ("2 duplicate instance(s) at the same position dropped",)

    def brighter(ds):
        new_instance(ds)
        set_pixels(ds, ds.pixel_array + 1)

    with pytest.raises(SeriesError, match="same slice position have different pixels"):
        assemble_series([*sub, edited(sub[2], brighter)], max_pixels=MAX_PIXELS)


def _tilted(sub: list[bytes], degrees: float) -> list[bytes]:
    """Each slice shifted posteriorly in proportion to its height (a gantry tilt)."""
    top = position(parse(sub[0]))[2]
    shift = np.tan(np.radians(degrees))

    def tilt(ds):
        x, y, z = position(ds)
        ds.ImagePositionPatient = [x, y + (top - z) * shift, z]

    return [edited(data, tilt) for data in sub]


def test_gantry_tilt(sub: list[bytes], sub_hu: np.ndarray) -> None:
    with pytest.raises(SeriesError, match=r"10\.0 degrees off the slice normal \(gantry tilt\)"):
        assemble_series(_tilted(sub, 10.0), max_pixels=MAX_PIXELS)
    slight = assemble_series(_tilted(sub, 0.5), max_pixels=MAX_PIXELS)
    assert slight.warnings == ("slight gantry tilt (0.50 degrees) kept in the geometry",)
    assert np.array_equal(slight.voxels, sub_hu)
    step = slight.affine[:3, 0]  # one slice up moves anterior by 5 mm x tan(0.5 deg)
    np.testing.assert_allclose(step, [0.0, -5.0 * np.tan(np.radians(0.5)), 5.0], atol=1e-6)


def test_mixed_sizes_and_orientations(sub: list[bytes]) -> None:
    def cropped(ds):
        new_instance(ds)
        set_pixels(ds, ds.pixel_array[:256, :256])

    with pytest.raises(SeriesError, match=r"different sizes \(512x512 and 256x256 pixels\)"):
        assemble_series([*sub[:4], edited(sub[4], cropped), *sub[5:]], max_pixels=MAX_PIXELS)

    def rotated(ds):
        c, s = np.cos(np.radians(5)), np.sin(np.radians(5))
        ds.ImageOrientationPatient = [c, s, 0.0, -s, c, 0.0]

    with pytest.raises(SeriesError, match="different Image Orientation"):
        assemble_series([*sub[:4], edited(sub[4], rotated), *sub[5:]], max_pixels=MAX_PIXELS)


def test_two_series_need_a_choice(sub: list[bytes], data_dir: Path) -> None:
    other = [p.read_bytes() for p in series_paths(data_dir, J2K)[:5]]
    chest_uid = str(parse(sub[0]).SeriesInstanceUID)
    other_uid = str(parse(other[0]).SeriesInstanceUID)
    with pytest.raises(SeriesChoiceError) as caught:
        assemble_series(sub + other, max_pixels=MAX_PIXELS)
    assert sorted(caught.value.series, key=lambda s: str(s["instances"])) == [
        {"series_uid": other_uid, "description": "CT Body 3.0", "modality": "CT", "instances": 5},
        {"series_uid": chest_uid, "description": "5mm", "modality": "CT", "instances": 8},
    ]
    message = str(caught.value)
    assert "2 series" in message and chest_uid in message and other_uid in message
    assert "8 instance(s)" in message and "series_uid" in message
    chosen = assemble_series(sub + other, max_pixels=MAX_PIXELS, series_uid=other_uid)
    assert chosen.shape == (5, 512, 512) and chosen.skipped == {"other_series": 8}
    with pytest.raises(SeriesChoiceError, match=r"'1\.2\.3' is not in the upload") as unknown:
        assemble_series(sub, max_pixels=MAX_PIXELS, series_uid="1.2.3")
    assert [s["series_uid"] for s in unknown.value.series] == [chest_uid]


def test_non_images_localizers_and_other_bytes_are_skipped(
    sub: list[bytes], sub_hu: np.ndarray
) -> None:
    def structured_report(ds):
        new_instance(ds)
        del ds.PixelData, ds.Rows, ds.Columns
        ds.Modality = "SR"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR

    def localizer(ds):  # same series, off the slice line: would break the series if kept
        new_instance(ds)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.ImagePositionPatient = [-250.0, 0.0, -141.5]

    extra = [edited(sub[0], structured_report), edited(sub[1], localizer), b"a README, not DICOM"]
    volume = assemble_series([*extra, *sub], max_pixels=MAX_PIXELS)
    assert np.array_equal(volume.voxels, sub_hu)
    assert volume.skipped == {"non_image": 1, "localizer": 1, "not_dicom": 1}
    assert volume.to_input.file_index == tuple(range(10, 2, -1))
    with pytest.raises(UnsupportedMediaError, match=r"no DICOM image.*1 localizer, 1 non_image"):
        assemble_series(extra[:2], max_pixels=MAX_PIXELS)


def test_series_in_a_zip(sub: list[bytes], sub_hu: np.ndarray) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("study/", b"")
        for index, data in enumerate(sub):
            archive.writestr(f"study/IM{index:04d}", data)
    members = read_members(buffer.getvalue(), max_bytes=50 << 20, max_files=100)
    assert [m.name for m in members] == [f"study/IM{i:04d}" for i in range(8)]
    volume = assemble_series([m.data for m in members], max_pixels=MAX_PIXELS)
    assert np.array_equal(volume.voxels, sub_hu)

    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("../outside.dcm", sub[0])
    with pytest.raises(BadArchiveError, match="zip entry 10 has a path that escapes"):
        read_members(buffer.getvalue(), max_bytes=50 << 20, max_files=100)


def _rows_reversed(data: bytes) -> bytes:
    """The same slice stored bottom row first: column direction -y, position of the last row."""

    def flip(ds):
        x, y, z = position(ds)
        ds.ImagePositionPatient = [x, y + (ds.Rows - 1) * float(ds.PixelSpacing[0]), z]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
        set_pixels(ds, ds.pixel_array[::-1])

    return edited(data, flip)


def test_flipped_rows_give_the_same_canonical_volume(sub: list[bytes], sub_hu: np.ndarray) -> None:
    reference = assemble_series(sub, max_pixels=MAX_PIXELS)
    flipped = assemble_series([_rows_reversed(d) for d in sub], max_pixels=MAX_PIXELS)
    assert np.array_equal(flipped.voxels, sub_hu)
    np.testing.assert_allclose(flipped.affine, reference.affine, atol=1e-9)
    # the normal is now -z: the input stack runs superior -> inferior, rows bottom first
    assert flipped.to_input.file_index == tuple(range(8))
    mask = np.random.default_rng(1).random(flipped.shape) > 0.5
    expected = reference.mask_to_input(mask)[::-1, ::-1, :]
    assert np.array_equal(flipped.mask_to_input(mask), expected)
    assert np.array_equal(flipped.mask_to_input(flipped.voxels)[3], hu(_rows_reversed(sub[3])))


def test_jpeg2000_series(data_dir: Path) -> None:
    files = [p.read_bytes() for p in series_paths(data_dir, J2K)]
    volume = assemble_series(files, max_pixels=MAX_PIXELS, threads=2)
    assert volume.shape == (20, 512, 512) and volume.spacing_mm == (2.0, 0.9765625, 0.9765625)
    # the data card's -1024..1436 is the first slice's range; the series peaks at 1839
    assert (float(volume.voxels.min()), float(volume.voxels.max())) == (-1024.0, 1839.0)
    # z -766.5 (first file) .. -804.5 (last file): the last file is canonical slice 0
    assert volume.affine[2, 3] == -804.5
    assert np.array_equal(volume.voxels[0], decode_dicom(files[-1], max_pixels=MAX_PIXELS).frame(0))


def test_enhanced_multiframe_ct(data_dir: Path) -> None:
    data = (data_dir / "files/dicom/eCT_Supplemental.dcm").read_bytes()
    frames = decode_dicom(data, max_pixels=MAX_PIXELS).pixels
    volume = assemble_series([data], max_pixels=MAX_PIXELS)
    # frames at z -159 and -149 mm; rows run to the patient's right (-x): columns flipped
    assert volume.shape == (2, 512, 512) and volume.spacing_mm == (10.0, 0.388672, 0.388672)
    assert np.array_equal(volume.voxels, frames[:, :, ::-1])
    assert volume.affine[2, 3] == -159.0 and volume.affine[0, 2] == 0.388672
    assert volume.source is not None and volume.source.frame_numbers == (1, 2)
    assert volume.to_input.frame_index == (1, 0) and volume.to_input.file_index == (0, 0)
    assert np.array_equal(volume.mask_to_input(volume.voxels), frames[::-1])


def test_radiographs_are_not_a_volume(data_dir: Path) -> None:
    data = (data_dir / "files/dicom/RG1_UNCR.dcm").read_bytes()
    with pytest.raises(UnsupportedModalityError, match="not CT"):
        assemble_series([data], max_pixels=MAX_PIXELS)


def test_pixel_limit_is_checked_before_decoding(sub: list[bytes], monkeypatch) -> None:
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the pixel limit check")

    monkeypatch.setattr(series_module, "decode_dataset", no_decoding)
    with pytest.raises(InputTooLargeError, match="the series is 512x512 pixels x 8 frames"):
        assemble_series(sub, max_pixels=8 * 512 * 512 - 1)


def test_empty_and_bad_arguments(sub: list[bytes]) -> None:
    with pytest.raises(EmptyInputError):
        assemble_series([], max_pixels=MAX_PIXELS)
    with pytest.raises(UnsupportedMediaError, match="file 2 of 2"):
        assemble_series([sub[0], sub[1][:2000]], max_pixels=MAX_PIXELS)


def test_no_identifiers_in_logs_or_repr(sub: list[bytes], caplog) -> None:
    caplog.set_level(logging.DEBUG)
    volume = assemble_series(sub, max_pixels=MAX_PIXELS)
    ds = parse(sub[0])
    secrets = [str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.PatientID)]
    shown = caplog.text + repr(volume) + repr(volume.source) + repr(volume.to_input)
    assert caplog.text and not any(secret in shown for secret in secrets)
    assert generate_uid() not in shown


def test_corrupted_slices_raise_domain_errors_only(sub: list[bytes]) -> None:
    rng = random.Random(5)
    for _ in range(30):
        data = bytearray(sub[1])
        if rng.random() < 0.4:
            data = data[: rng.randrange(1, len(data))]
        else:
            for _ in range(rng.randint(1, 20)):
                data[rng.randrange(min(len(data), 2500))] = rng.randrange(256)
        with contextlib.suppress(LungsegError):
            assemble_series([sub[0], bytes(data), sub[2]], max_pixels=MAX_PIXELS)


def test_modality_from_the_sop_class(sub: list[bytes], sub_hu: np.ndarray) -> None:
    def no_modality(ds):
        del ds.Modality

    volume = assemble_series([edited(d, no_modality) for d in sub[:3]], max_pixels=MAX_PIXELS)
    assert volume.modality == "ct" and np.array_equal(volume.voxels, sub_hu[-3:])


def test_coronal_series_is_refused(sub: list[bytes]) -> None:
    def coronal(ds):  # rows along -z, slices stacked along y
        x, _, z = position(ds)
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
        ds.ImagePositionPatient = [x, z, 0.0]

    with pytest.raises(UnsupportedMediaError, match="not axial"):
        assemble_series([edited(d, coronal) for d in sub[:3]], max_pixels=MAX_PIXELS)
