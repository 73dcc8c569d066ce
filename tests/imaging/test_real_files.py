"""Every real file under <data_dir>/files through ``service.imaging.decode``.

Covered: files/dicom/*.dcm, all 20 slices of files/ct-series-jpeg2000, and every PNG of
files/covid-qu-ex-layout (images and masks). files/nifti/example_ct_sm.nii.gz is out of scope:
``decode`` accepts single DICOM, PNG and JPEG uploads only, and NIfTI volumes are not one of them.

The expected numbers were read from the files once (pydicom / OpenCV) and are asserted exactly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from service.imaging import DecodedImage, decode, j2k

DICOM_FILES = {
    "693_J2KR.dcm",
    "693_UNCR.dcm",
    "CT_small.dcm",
    "RG1_J2KI.dcm",
    "RG1_J2KR.dcm",
    "RG1_UNCR.dcm",
    "eCT_Supplemental.dcm",
}
RG1_SHAPE = (1, 1955, 1841)
SERIES_SPACING = (0.9765625, 0.9765625)


def _decode(path: Path) -> DecodedImage:
    return decode(path.read_bytes())


def _raw(path: Path) -> np.ndarray:
    """Stored pixel values as pydicom reads them (independent reference)."""
    return pydicom.dcmread(path).pixel_array


@pytest.fixture(scope="module")
def dicom_dir(data_dir: Path) -> Path:
    return data_dir / "files" / "dicom"


@pytest.fixture(scope="module")
def rg1(dicom_dir: Path) -> dict[str, DecodedImage]:
    return {name: _decode(dicom_dir / f"RG1_{name}.dcm") for name in ("UNCR", "J2KR", "J2KI")}


def test_every_dicom_file_is_covered(dicom_dir: Path) -> None:
    assert {p.name for p in dicom_dir.glob("*.dcm")} == DICOM_FILES


def _check_common(image: DecodedImage, shape: tuple[int, int, int]) -> None:
    assert image.pixels.shape == shape
    assert image.pixels.dtype == np.float32
    assert image.source_format == "dicom"
    assert np.isfinite(image.pixels).all()


# --- RG1: chest CR, MONOCHROME1, 15-bit, window 15000/30000, PixelSpacing 0\0 -----------------


@pytest.mark.parametrize("name", ["UNCR", "J2KR", "J2KI"])
def test_rg1_header_facts(rg1: dict[str, DecodedImage], name: str) -> None:
    image = rg1[name]
    _check_common(image, RG1_SHAPE)
    assert image.units == "display"
    assert image.modality == "cxr"
    assert image.photometric == "MONOCHROME1"
    assert image.bits_stored == 15
    assert image.spacing_mm is None  # PixelSpacing is 0\0 and there is no ImagerPixelSpacing
    assert float(image.pixels.min()) >= 0.0
    assert float(image.pixels.max()) <= 1.0


def test_rg1_window_then_inversion_exact(dicom_dir: Path, rg1: dict[str, DecodedImage]) -> None:
    raw = _raw(dicom_dir / "RG1_UNCR.dcm").astype(np.float64)
    center, width = 15000.0 - 0.5, 30000.0 - 1.0  # DICOM LINEAR window, PS3.3 C.11.2.1.2.1
    windowed = np.clip((raw - center) / width + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(rg1["UNCR"].pixels[0], 1.0 - windowed, atol=1e-6)
    assert float(rg1["UNCR"].pixels.min()) == pytest.approx(0.117337, abs=1e-6)
    assert float(rg1["UNCR"].pixels.max()) == pytest.approx(0.970866, abs=1e-6)


def _box(
    shape: tuple[int, ...], rows: tuple[float, float], columns: tuple[float, float]
) -> tuple[slice, slice]:
    """Slices for a box given as fractions of the image height and width."""
    height, width = shape
    return (
        slice(int(rows[0] * height), int(rows[1] * height)),
        slice(int(columns[0] * width), int(columns[1] * width)),
    )


def test_rg1_is_inverted_so_lungs_are_dark(dicom_dir: Path, rg1: dict[str, DecodedImage]) -> None:
    display = rg1["UNCR"].pixels[0]
    raw = _raw(dicom_dir / "RG1_UNCR.dcm")
    mediastinum = _box(display.shape, (0.30, 0.60), (0.46, 0.54))
    right_lung = _box(display.shape, (0.25, 0.50), (0.20, 0.30))
    left_lung = _box(display.shape, (0.25, 0.50), (0.70, 0.80))
    # MONOCHROME1 stores bright as low values: raw lungs are HIGH, displayed lungs are dark.
    assert raw[right_lung].mean() > 3 * raw[mediastinum].mean()
    for lung in (right_lung, left_lung):
        assert display[mediastinum].mean() > display[lung].mean() + 0.2
    sample = np.s_[::7, ::7]
    assert np.corrcoef(raw[sample].ravel(), display[sample].ravel())[0, 1] < -0.999


def test_rg1_lossless_identical_lossy_close(rg1: dict[str, DecodedImage]) -> None:
    assert np.array_equal(rg1["UNCR"].pixels, rg1["J2KR"].pixels)
    difference = np.abs(rg1["UNCR"].pixels - rg1["J2KI"].pixels)
    assert float(difference.mean()) < 0.003  # measured 0.0017 (50 raw units / 30000)
    assert not np.array_equal(rg1["UNCR"].pixels, rg1["J2KI"].pixels)


# --- CT files ----------------------------------------------------------------------------------


def test_693_uncompressed_and_j2k_identical_hu(dicom_dir: Path) -> None:
    uncompressed = _decode(dicom_dir / "693_UNCR.dcm")
    lossless = _decode(dicom_dir / "693_J2KR.dcm")
    for image in (uncompressed, lossless):
        _check_common(image, (1, 512, 512))
        assert (image.units, image.modality, image.photometric) == ("hu", "ct", "MONOCHROME2")
        assert image.spacing_mm == (0.478516, 0.478516)
    # The BitsStored quirk: 14 in the uncompressed header, 16 in the JPEG 2000 one.
    assert (uncompressed.bits_stored, lossless.bits_stored) == (14, 16)
    assert np.array_equal(uncompressed.pixels, lossless.pixels)
    hu = uncompressed.pixels
    assert float(hu.min()) == -3024.0  # stored -2000 padding outside the scan circle
    assert float(hu.max()) == 1468.0
    body = hu[hu > -2000]
    assert np.mean(np.abs(body + 1000) < 100) > 0.05  # air around and in the body
    assert float(body.max()) > 300  # bone
    expected = _raw(dicom_dir / "693_UNCR.dcm").astype(np.float32) - 1024.0
    assert np.array_equal(hu[0], expected)


def test_ct_small(dicom_dir: Path) -> None:
    image = _decode(dicom_dir / "CT_small.dcm")
    _check_common(image, (1, 128, 128))
    assert (image.units, image.modality, image.bits_stored) == ("hu", "ct", 16)
    assert image.spacing_mm == (0.661468, 0.661468)
    assert (float(image.pixels.min()), float(image.pixels.max())) == (-896.0, 1167.0)
    expected = _raw(dicom_dir / "CT_small.dcm").astype(np.float32) - 1024.0
    assert np.array_equal(image.pixels[0], expected)


def test_enhanced_ct_two_frames_rescale_from_functional_groups(dicom_dir: Path) -> None:
    path = dicom_dir / "eCT_Supplemental.dcm"
    image = _decode(path)
    _check_common(image, (2, 512, 512))
    assert (image.units, image.modality, image.bits_stored) == ("hu", "ct", 16)
    # No top-level PixelSpacing / rescale: both come from SharedFunctionalGroupsSequence.
    assert image.spacing_mm == (0.388672, 0.388672)
    assert np.array_equal(image.pixels, _raw(path).astype(np.float32) - 1024.0)
    assert (float(image.pixels.min()), float(image.pixels.max())) == (-1024.0, 172.0)


@pytest.fixture(scope="module")
def series(data_dir: Path) -> list[DecodedImage]:
    paths = sorted((data_dir / "files" / "ct-series-jpeg2000").iterdir())
    assert len(paths) == 20
    return [_decode(path) for path in paths]


def test_ct_series_all_twenty_slices(series: list[DecodedImage]) -> None:
    for image in series:
        _check_common(image, (1, 512, 512))
        assert (image.units, image.modality, image.bits_stored) == ("hu", "ct", 12)
        assert image.spacing_mm == SERIES_SPACING
        assert float(image.pixels.min()) == -1024.0
    volume = np.concatenate([image.pixels for image in series])
    assert volume.shape == (20, 512, 512)
    assert float(volume.min()) == -1024.0
    # The data card's "-1024..1436" is the first slice's range; the series peaks at 1839.
    assert float(series[0].pixels.max()) == 1436.0
    assert float(volume.max()) == 1839.0
    slice_maxima = [int(image.pixels.max()) for image in series]
    assert slice_maxima[:5] == [1436, 1430, 1443, 1733, 1839]


# --- COVID-QU-Ex layout PNGs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def covidqu_dir(data_dir: Path) -> Path:
    return data_dir / "files" / "covid-qu-ex-layout" / "Val"


def test_covidqu_images(covidqu_dir: Path) -> None:
    paths = sorted(covidqu_dir.glob("*/images/*.png"))
    assert len(paths) == 12
    assert {p.parent.parent.name for p in paths} == {"COVID-19", "Non-COVID", "Normal"}
    for path in paths:
        image = _decode(path)
        assert image.pixels.shape == (1, 256, 256)
        assert image.pixels.dtype == np.float32
        assert (image.units, image.modality, image.source_format) == ("display", None, "png")
        assert (image.spacing_mm, image.bits_stored, image.photometric) == (None, 8, "MONOCHROME2")
        reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert reference is not None
        assert reference.shape == (256, 256) and reference.dtype == np.uint8
        assert np.array_equal(image.pixels[0], reference.astype(np.float32) / np.float32(255))
        assert float(image.pixels.min()) == 0.0


def test_covidqu_masks_are_binary(covidqu_dir: Path) -> None:
    paths = sorted(covidqu_dir.glob("*/*masks/*.png"))
    assert len(paths) == 24
    for path in paths:
        image = _decode(path)
        assert image.pixels.shape == (1, 256, 256)
        assert set(np.unique(image.pixels).tolist()) <= {0.0, 1.0}
        if "infection" in path.parent.name and path.parent.parent.name != "COVID-19":
            assert float(image.pixels.max()) == 0.0  # empty for Non-COVID and Normal


# --- JPEG 2000: the multi-threaded decoder against pydicom's pylibjpeg plugin -----------------


def _j2k_files(data_dir: Path) -> list[Path]:
    dicom = [
        data_dir / "files" / "dicom" / f"{n}.dcm" for n in ("RG1_J2KR", "RG1_J2KI", "693_J2KR")
    ]
    return dicom + sorted((data_dir / "files" / "ct-series-jpeg2000").iterdir())


def test_every_jpeg2000_file_decodes_identically_with_threads(data_dir: Path) -> None:
    files = _j2k_files(data_dir)
    assert len(files) == 23
    for path in files:
        reference = pydicom.dcmread(path)
        reference.pixel_array_options(decoding_plugin="pylibjpeg")
        threaded = pydicom.dcmread(path)
        threaded.pixel_array_options(decoding_plugin=j2k.PLUGIN, j2k_threads=2)
        expected, got = reference.pixel_array, threaded.pixel_array
        assert got.dtype == expected.dtype, path.name
        assert np.array_equal(got, expected), path.name
