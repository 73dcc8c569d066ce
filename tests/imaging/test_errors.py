"""``service.imaging.decode`` on bad input (each class of error), and its exact rules on tiny
inputs built in code. Needs only tests/fixtures/CT_small.dcm, not the shared data folder."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

from service.errors import (
    EmptyInputError,
    InputTooLargeError,
    InvalidParameterError,
    UnsupportedMediaError,
    UnsupportedModalityError,
)
from service.imaging import decode
from tests.conftest import FIXTURES_DIR

CT_SMALL = FIXTURES_DIR / "CT_small.dcm"
CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
ACCEPTED = r"DICOM \(\.dcm\), PNG or JPEG"


# --- builders ----------------------------------------------------------------------------------


def make_dataset(sop_class: str, modality: str | None, **attrs: object) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    if modality is not None:
        ds.Modality = modality
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def to_bytes(ds: Dataset, syntax: UID = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_image(
    pixels: np.ndarray,
    modality: str | None = "CR",
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    **attrs: object,
) -> bytes:
    ds = make_dataset(CR_STORAGE, modality, **attrs)
    ds.set_pixel_data(pixels, photometric, bits_stored)
    return to_bytes(ds)


def grey_header(modality: str, rows: int, columns: int, bits: int, **attrs: object) -> Dataset:
    """An image dataset whose Pixel Data the caller sets (for inconsistent or forged headers)."""
    ds = make_dataset(CR_STORAGE, modality, Rows=rows, Columns=columns, **attrs)
    for key, value in (
        ("SamplesPerPixel", 1),
        ("BitsAllocated", bits),
        ("BitsStored", bits),
        ("HighBit", bits - 1),
        ("PixelRepresentation", 0),
    ):
        setattr(ds, key, value)
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def make_png(width: int, height: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG with 8-bit samples; ``rows`` is the filtered scanline data (filter byte per row)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def encode(extension: str, image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


def exif_orientation_segment(orientation: int) -> bytes:
    """A minimal APP1 Exif segment holding one IFD0 entry: Orientation (0x0112, SHORT)."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1)
    tiff += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body


@pytest.fixture
def ct_small() -> bytes:
    return CT_SMALL.read_bytes()


@pytest.fixture
def no_imdecode(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> None:
        raise AssertionError("cv2.imdecode must not run for an oversized header")

    monkeypatch.setattr(cv2, "imdecode", refuse)


# --- not an accepted file ----------------------------------------------------------------------


def test_empty_bytes() -> None:
    with pytest.raises(EmptyInputError, match=r"empty \(0 bytes\)"):
        decode(b"")


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"patient notes\nline two\n",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\x00" * 64,  # looks like bare DICOM, no image
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    ],
    ids=["random", "text", "pdf", "bare-dicom-header-only", "gif"],
)
def test_unrecognised_bytes(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaError, match=f"unsupported file type: expected {ACCEPTED}"):
        decode(data)


def test_max_pixels_must_be_positive(ct_small: bytes) -> None:
    with pytest.raises(InvalidParameterError, match="max_pixels must be a positive integer"):
        decode(ct_small, max_pixels=0)


# --- truncated and corrupt ---------------------------------------------------------------------


def test_truncated_dicom_half(ct_small: bytes) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"could not be decoded \(Explicit VR Little"):
        decode(ct_small[: len(ct_small) // 2])


def test_truncated_dicom_header_only(ct_small: bytes) -> None:
    with pytest.raises(UnsupportedMediaError, match=r"no pixel data \(CT Image Storage"):
        decode(ct_small[:5000])


def test_truncated_png() -> None:
    data = encode(".png", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    with pytest.raises(UnsupportedMediaError, match="PNG file could not be decoded"):
        decode(data[: len(data) // 2])


def test_truncated_jpeg() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)
    data = encode(".jpg", noise)
    with pytest.raises(UnsupportedMediaError, match="JPEG file could not be decoded"):
        decode(data[: len(data) // 2])


def test_corrupt_j2k_codestream_larger_than_header() -> None:
    size = (50_000, 50_000, 0, 0, 50_000, 50_000, 0, 0)  # image, offset, tile, tile offset
    siz = struct.pack(">HHIIIIIIIIHBBB", 41, 0, *size, 1, 7, 1, 1)  # one 8-bit component
    codestream = b"\xff\x4f\xff\x51" + siz + b"\x00" * 64
    ds = grey_header("CR", 8, 8, 8)
    ds.PixelData = encapsulate([codestream])
    data = to_bytes(ds, JPEG2000Lossless)
    with pytest.raises(UnsupportedMediaError, match="frame 0 is 50000x50000 pixels but the DICOM"):
        decode(data)


# --- DICOM without an image --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sop_class", "modality", "expected"),
    [
        (
            "1.2.840.10008.5.1.4.1.1.481.3",
            "RTSTRUCT",
            "RT Structure Set Storage, modality RTSTRUCT",
        ),
        ("1.2.840.10008.1.3.10", None, r"Media Storage Directory Storage\)"),
        ("1.2.840.10008.5.1.4.1.1.88.11", "SR", r"Basic Text SR Storage, modality SR"),
    ],
    ids=["rtstruct", "dicomdir", "sr"],
)
def test_dicom_without_pixel_data(sop_class: str, modality: str | None, expected: str) -> None:
    data = to_bytes(make_dataset(sop_class, modality, StudyDescription="not an image"))
    with pytest.raises(UnsupportedMediaError, match=f"has no pixel data \\({expected}"):
        decode(data)


def test_dicom_zero_rows() -> None:
    ds = grey_header("CR", 0, 4, 16)
    ds.PixelData = b""
    with pytest.raises(UnsupportedMediaError, match=r"image is empty: 0 rows x 4 columns"):
        decode(to_bytes(ds))


# --- too large ---------------------------------------------------------------------------------


def test_real_file_over_pixel_limit(ct_small: bytes) -> None:
    expected = r"128x128 pixels = 16384 pixels, more than the limit of 16383"
    with pytest.raises(InputTooLargeError, match=expected):
        decode(ct_small, max_pixels=128 * 128 - 1)
    assert decode(ct_small, max_pixels=128 * 128).pixels.shape == (1, 128, 128)


def test_dicom_frames_count_towards_limit() -> None:
    data = make_image(np.zeros((3, 4, 5), np.uint16), NumberOfFrames=3)
    with pytest.raises(InputTooLargeError, match=r"5x4 pixels x 3 frames = 60 pixels"):
        decode(data, max_pixels=59)


def test_dicom_header_claiming_huge_image_is_refused_before_decoding() -> None:
    ds = grey_header("CR", 65535, 65535, 16, NumberOfFrames=100)
    ds.PixelData = b"\x00\x00" * 8
    with pytest.raises(InputTooLargeError, match="x 100 frames"):
        decode(to_bytes(ds))


def test_forged_png_header_refused_without_allocating(no_imdecode: None) -> None:
    data = make_png(100_000, 100_000, 0, b"\x00" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(InputTooLargeError, match=r"PNG image is 100000x100000 pixels"):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_forged_jpeg_sof_refused_before_decoding(no_imdecode: None) -> None:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 60_000, 60_000, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + exif_orientation_segment(1) + sof + b"\xff\xda\x00\x08" + b"\x00" * 32
    with pytest.raises(InputTooLargeError, match=r"JPEG image is 60000x60000 pixels"):
        decode(data)


def test_deflated_dicom_bomb_is_bounded(ct_small: bytes) -> None:
    ds = make_dataset(CR_STORAGE, "CR")
    ds.set_pixel_data(np.zeros((4, 4), np.uint16), "MONOCHROME2", 16)
    ds.add_new(0x00091010, "OB", b"\x00" * (20 << 20))  # private, 20 MiB of zeros
    data = to_bytes(ds, DeflatedExplicitVRLittleEndian)
    assert len(data) < 100_000
    with pytest.raises(InputTooLargeError, match="deflated DICOM dataset expands to more than"):
        decode(data, max_pixels=16)


def test_deflated_dicom_decodes() -> None:
    ds = make_dataset(CR_STORAGE, "CR", WindowCenter=50.5, WindowWidth=101)  # LINEAR: 0..100
    ds.set_pixel_data(np.array([[0, 50], [100, 7]], np.uint16), "MONOCHROME2", 16)
    image = decode(to_bytes(ds, DeflatedExplicitVRLittleEndian))
    np.testing.assert_allclose(image.pixels[0], [[0.0, 0.5], [1.0, 0.07]], atol=1e-6)


# --- modality ----------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", ["MR", "US", "NM", "PT", "XA", "MG"])
def test_unsupported_modality(modality: str) -> None:
    data = make_image(np.arange(16, dtype=np.uint16).reshape(4, 4), modality=modality)
    with pytest.raises(UnsupportedModalityError, match=f"modality '{modality}' is not supported"):
        decode(data)


def test_colour_secondary_capture_refused() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    data = make_image(rgb, "OT", "RGB", 8, SOPClassUID=SECONDARY_CAPTURE)
    with pytest.raises(UnsupportedModalityError, match="modality OT and photometric RGB"):
        decode(data)


@pytest.mark.parametrize("modality", ["OT", None])
def test_grey_secondary_capture_is_cxr(modality: str | None) -> None:
    image = decode(make_image(np.array([[0, 255]], np.uint8), modality, bits_stored=8))
    assert image.modality == "cxr"
    assert image.pixels.tolist() == [[[0.0, 1.0]]]  # no VOI: percentile scaling of two values


def test_colour_ct_refused() -> None:
    data = make_image(np.zeros((2, 2, 3), np.uint8), "CT", "RGB", 8)
    with pytest.raises(UnsupportedMediaError, match=r"colour \(RGB\) CT has no Hounsfield units"):
        decode(data)


# --- intensity rules on tiny DICOM ------------------------------------------------------------


def test_monochrome1_without_voi_robust_minmax_then_inverted() -> None:
    values = np.arange(201, dtype=np.uint16).reshape(1, 201)  # percentiles 0.5/99.5: 1 and 199
    image = decode(make_image(values, "DX", "MONOCHROME1", 12))
    assert (image.units, image.modality, image.photometric) == ("display", "cxr", "MONOCHROME1")
    expected = 1.0 - np.clip((values - 1.0) / 198.0, 0.0, 1.0)
    np.testing.assert_allclose(image.pixels[0], expected, atol=1e-6)


def test_window_first_of_several_with_rescale() -> None:
    raw = np.array([[0, 100, 200, 300]], np.uint16)
    data = make_image(
        raw,
        "CR",
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=[200.5, 0],
        WindowWidth=[201, 1],
    )
    # values after rescale: -100, 100, 300, 500; window 100..300 linear -> 0, 0, 1, 1 ... exact:
    image = decode(data)
    np.testing.assert_allclose(image.pixels[0, 0], [0.0, 0.0, 1.0, 1.0], atol=1e-6)
    raw2 = np.array([[100, 125, 150]], np.uint16)
    image2 = decode(make_image(raw2, "CR", bits_stored=12, WindowCenter=125.5, WindowWidth=51))
    np.testing.assert_allclose(image2.pixels[0, 0], [0.0, 0.5, 1.0], atol=1e-6)


def test_voi_lut_sequence_preferred_and_scaled_by_lut_range() -> None:
    item = Dataset()
    item.LUTDescriptor = [4, 10, 16]  # 4 entries, first mapped value 10, 16 bits
    item.add_new(0x00283006, "US", [100, 200, 300, 500])  # LUT Data
    data = make_image(
        np.array([[5, 10, 11, 13, 20]], np.uint16),
        "DX",
        bits_stored=8,
        VOILUTSequence=[item],
        WindowCenter=0,
        WindowWidth=1,
    )
    image = decode(data)
    np.testing.assert_allclose(image.pixels[0, 0], [0.0, 0.0, 0.25, 1.0, 1.0], atol=1e-6)


def test_colour_cr_becomes_luma() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [51, 51, 51]]], np.uint8)
    image = decode(make_image(rgb, "CR", "RGB", 8))
    np.testing.assert_allclose(image.pixels[0, 0], [0.299, 0.587, 0.114, 0.2], atol=1e-6)


def test_ct_without_rescale_is_hu_as_stored() -> None:
    stored = np.array([[-1000, 0], [40, 1200]], np.int16)
    image = decode(make_image(stored, "CT"))
    assert (image.units, image.modality, image.spacing_mm) == ("hu", "ct", None)
    assert image.pixels.tolist() == [[[-1000.0, 0.0], [40.0, 1200.0]]]


def test_enhanced_ct_per_frame_rescale_and_spacing() -> None:
    def group(**attrs: object) -> Dataset:
        item = Dataset()
        for key, value in attrs.items():
            setattr(item, key, value)
        return item

    frames = np.array([[[0, 10]], [[0, 10]]], np.uint16)
    shared = group(PixelMeasuresSequence=[group(PixelSpacing=[0.5, 0.25])])
    per_frame = [
        group(PixelValueTransformationSequence=[group(RescaleSlope=1, RescaleIntercept=-1024)]),
        group(PixelValueTransformationSequence=[group(RescaleSlope=2, RescaleIntercept=-1000)]),
    ]
    data = make_image(
        frames,
        "CT",
        SharedFunctionalGroupsSequence=[shared],
        PerFrameFunctionalGroupsSequence=per_frame,
        NumberOfFrames=2,
    )
    image = decode(data)
    assert image.pixels.tolist() == [[[-1024.0, -1014.0]], [[-1000.0, -980.0]]]
    assert image.spacing_mm == (0.5, 0.25)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"PixelSpacing": [0, 0]}, None),
        ({"PixelSpacing": [0.2, 0.3]}, (0.2, 0.3)),
        ({"ImagerPixelSpacing": [0.15, 0.15]}, (0.15, 0.15)),
        ({"PixelSpacing": [0, 0], "ImagerPixelSpacing": [0.1, 0.1]}, (0.1, 0.1)),
    ],
)
def test_spacing_rules(attrs: dict[str, object], expected: tuple[float, float] | None) -> None:
    ds = make_dataset(CR_STORAGE, "DX", **attrs)
    ds.set_pixel_data(np.zeros((2, 2), np.uint16), "MONOCHROME2", 16)
    image = decode(to_bytes(ds))
    assert image.spacing_mm == expected


def test_preamble_less_dicom(ct_small: bytes) -> None:
    (meta_length,) = struct.unpack("<I", ct_small[140:144])
    bare = ct_small[144 + meta_length :]
    assert bare[:2] == b"\x08\x00"
    assert np.array_equal(decode(bare).pixels, decode(ct_small).pixels)


# --- PNG / JPEG rules --------------------------------------------------------------------------


def test_png_8bit_grey() -> None:
    image = decode(encode(".png", np.array([[0, 51, 255]], np.uint8)))
    assert (image.units, image.modality, image.source_format, image.bits_stored) == (
        "display",
        None,
        "png",
        8,
    )
    np.testing.assert_allclose(image.pixels, [[[0.0, 0.2, 1.0]]], atol=1e-7)


def test_png_16bit_full_range_divided_by_65535() -> None:
    image = decode(encode(".png", np.array([[0, 32768, 65535]], np.uint16)))
    np.testing.assert_allclose(image.pixels, [[[0.0, 32768 / 65535, 1.0]]], atol=1e-7)
    assert image.bits_stored == 16


def test_png_16bit_low_range_robust_minmax() -> None:
    values = np.arange(0, 4020, 20, dtype=np.uint16).reshape(1, 201)  # 12-bit data, max 4000
    image = decode(encode(".png", values))
    expected = np.clip((values - 20.0) / (3980.0 - 20.0), 0.0, 1.0)
    np.testing.assert_allclose(image.pixels[0], expected, atol=1e-6)


def test_png_colour_alpha_and_grey_alpha() -> None:
    bgr = np.array([[[0, 0, 255], [60, 60, 60]]], np.uint8)  # red, grey
    bgra = np.dstack([bgr, np.full((1, 2), 7, np.uint8)])
    expected = [[[0.299, 60 / 255]]]
    np.testing.assert_allclose(decode(encode(".png", bgr)).pixels, expected, atol=1e-6)
    np.testing.assert_allclose(decode(encode(".png", bgra)).pixels, expected, atol=1e-6)
    grey_alpha = make_png(2, 1, 4, b"\x00" + bytes([51, 0, 255, 128]))  # (grey, alpha) pairs
    np.testing.assert_allclose(decode(grey_alpha).pixels, [[[0.2, 1.0]]], atol=1e-7)


def test_jpeg_exif_orientation_is_not_applied() -> None:
    stored = np.zeros((4, 8), np.uint8)
    stored[0, :] = 255  # top stored row bright; orientation 6 would rotate to 8x4
    plain = encode(".jpg", stored)
    tagged = plain[:2] + exif_orientation_segment(6) + plain[2:]
    rotated = cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert rotated is not None and rotated.shape == (8, 4)  # what honouring EXIF would give
    image = decode(tagged)
    assert (image.source_format, image.pixels.shape) == ("jpeg", (1, 4, 8))
    assert float(image.pixels[0, 0].mean()) > 0.9 > 0.1 > float(image.pixels[0, 2].mean())


def test_truncated_deflated_dicom() -> None:
    ds = make_dataset(CR_STORAGE, "CR")
    ds.set_pixel_data(np.arange(64, dtype=np.uint16).reshape(8, 8), "MONOCHROME2", 16)
    data = to_bytes(ds, DeflatedExplicitVRLittleEndian)
    with pytest.raises(UnsupportedMediaError, match="deflated DICOM dataset is truncated"):
        decode(data[:-20])


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("slope", ["1e400", "nan"])
def test_non_finite_rescale(slope: str) -> None:
    ds = make_dataset(CR_STORAGE, "CT", RescaleIntercept=0)
    ds.set_pixel_data(np.ones((2, 2), np.uint16), "MONOCHROME2", 16)
    ds.add_new(0x00281053, "DS", slope)  # Rescale Slope
    with pytest.raises(UnsupportedMediaError, match="non-finite pixel values"):
        decode(to_bytes(ds))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on corrupted elements
def test_corrupted_real_files_raise_only_domain_errors(ct_small: bytes) -> None:
    """Seeded byte corruption and truncation: a domain error or a valid image, never a crash."""
    rng = np.random.default_rng(7)
    sources = [ct_small, encode(".png", np.arange(256, dtype=np.uint8).reshape(16, 16))]
    for _ in range(300):
        data = bytearray(sources[int(rng.integers(len(sources)))])
        for _ in range(int(rng.integers(1, 8))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        data = data[: int(rng.integers(1, len(data) + 1))]
        try:
            image = decode(bytes(data))
        except (UnsupportedMediaError, InputTooLargeError):
            continue
        assert image.pixels.dtype == np.float32 and image.pixels.ndim == 3
        assert np.isfinite(image.pixels).all()


def test_png_16bit_colour_full_range_judged_on_samples_not_luma() -> None:
    bgr = np.zeros((1, 2, 3), np.uint16)
    bgr[0, 0, 2] = 65535  # pure red: luma 0.299 * 65535 < 32768, but the sample is full-range
    image = decode(encode(".png", bgr))
    np.testing.assert_allclose(image.pixels, [[[0.299, 0.0]]], atol=1e-6)
    assert image.photometric == "RGB"
