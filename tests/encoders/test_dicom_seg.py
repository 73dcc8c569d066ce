"""DICOM SEG output: round trips through highdicom on real CR / CT / enhanced CT / a series,
references per frame, the real files' missing attributes, dciodvfy."""

from __future__ import annotations

import dataclasses
import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from service.encoders import ENCODERS, dicom_seg, encoder_for, seg_codes
from service.encoders.dicom_seg import encode_seg, encode_volume_seg, in_source_order
from service.errors import InvalidParameterError, UnsupportedMediaError
from service.imaging import decode
from service.imaging.series import assemble_series
from service.imaging.source import dicom_source
from service.imaging.types import DecodedImage, SourceRef
from service.models.segmenter import Segmenter, SegmenterConfig
from tests.encoders.seg_helpers import (
    J2K_SERIES,
    boxes,
    dciodvfy,
    read,
    segread,
    series_files,
    threshold_masks,
    to_bytes,
)

MAX_PIXELS = 80_000_000
MODEL = {"model_name": "unet-ct", "model_version": "2.0.0"}
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _image(data: bytes) -> DecodedImage:
    return decode(data, max_pixels=MAX_PIXELS)


def _code(item: pydicom.Dataset) -> tuple[str, str]:
    return str(item.CodeValue), str(item.CodingSchemeDesignator)


def _check_common(seg: pydicom.Dataset, source: SourceRef) -> None:
    """What every SEG of ours carries, whatever its source."""
    assert seg.SOPClassUID == SEG_CLASS and seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert "research use" in seg.SeriesDescription
    assert seg.SeriesInstanceUID != source.series_uid
    assert seg.SOPInstanceUID not in source.instance_uids
    assert seg.StudyInstanceUID == (source.study_uid or seg.StudyInstanceUID)
    header = source.headers[0]
    assert seg.PatientID == str(header.get("PatientID") or "")
    assert seg.PatientName == (header.get("PatientName") or "")
    lung, *_, infection = seg.SegmentSequence
    assert _code(lung.SegmentedPropertyCategoryCodeSequence[0]) == ("91723000", "SCT")
    assert _code(lung.SegmentedPropertyTypeCodeSequence[0]) == ("39607008", "SCT")
    assert _code(infection.SegmentedPropertyCategoryCodeSequence[0]) == ("49755003", "SCT")
    kind = infection.SegmentedPropertyTypeCodeSequence[0]
    assert _code(kind) == ("112121", "DCM")
    assert _code(kind.SegmentedPropertyTypeModifierCodeSequence[0]) == ("840539006", "SCT")
    for segment in seg.SegmentSequence:
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("unet-ct", "2.0.0")
        assert _code(algorithm.AlgorithmFamilyCodeSequence[0]) == ("123110", "DCM")


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("RG1_UNCR.dcm", (1, 1955, 1841)),  # CR, MONOCHROME1, PixelSpacing 0\0
        ("CT_small.dcm", (1, 128, 128)),
        ("693_J2KR.dcm", (1, 512, 512)),  # JPEG 2000 source, no Frame of Reference UID
    ],
)
def test_single_image_round_trip(data_dir: Path, name: str, shape: tuple[int, ...]) -> None:
    image = _image(read(data_dir, name))
    assert image.pixels.shape == shape
    lung, infection = boxes(*shape, seed=len(name))
    encoded = encode_seg(image.source, lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    assert (encoded.format, encoded.media_type) == ("seg", "application/dicom")
    seg = segread(encoded.content)
    source = image.source
    assert source is not None
    _check_common(seg, source)
    assert seg.NumberOfFrames == 2  # one frame per segment, empty or not
    uid = source.instance_uids[0]
    assert [u[2] for u in seg.get_source_image_uids()] == [uid]
    pixels = seg.get_pixels_by_source_instance([uid], segment_numbers=[1, 2])
    assert np.array_equal(pixels[0, ..., 0].astype(bool), lung[0])
    assert np.array_equal(pixels[0, ..., 1].astype(bool), infection[0])
    assert seg.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian  # < 1 MiB packed


def test_cr_spacing_zero_and_absent_are_left_out(data_dir: Path) -> None:
    """RG1's PixelSpacing 0\\0 and a CR with only ImagerPixelSpacing: no Pixel Measures
    (the CR IOD has no Frame of Reference; detector spacing is not patient spacing)."""
    original = pydicom.dcmread(io.BytesIO(read(data_dir, "RG1_UNCR.dcm")))
    assert [float(v) for v in original.PixelSpacing] == [0.0, 0.0]
    without = pydicom.dcmread(io.BytesIO(read(data_dir, "RG1_UNCR.dcm")))
    del without.PixelSpacing
    without.ImagerPixelSpacing = [0.15, 0.15]
    for data in (read(data_dir, "RG1_UNCR.dcm"), to_bytes(without)):
        image = _image(data)
        lung, infection = boxes(1, image.height, image.width)
        seg = segread(encode_seg(image.source, lung=lung, infection=infection, **MODEL).content)  # type: ignore[arg-type]
        shared = seg.SharedFunctionalGroupsSequence[0]
        measures = shared.get("PixelMeasuresSequence")
        assert measures is None or "PixelSpacing" not in measures[0]
        assert "FrameOfReferenceUID" not in seg
        assert "PatientOrientation" in seg  # type 2C without a patient position
        pixels = seg.get_pixels_by_source_instance([seg.get_source_image_uids()[0][2]])
        assert np.array_equal(pixels[0, ..., 0].astype(bool), lung[0])


def test_ct_lacking_modality_frame_of_reference_patient_and_study(
    data_dir: Path, tmp_path: Path
) -> None:
    """A CT slice without Modality, Frame of Reference UID and with empty Patient / Study
    modules: the SEG is written (new Frame of Reference, empty type 2 attributes) and the
    source header is not changed."""
    ds = pydicom.dcmread(io.BytesIO(read(data_dir, "CT_small.dcm")))
    for keyword in (
        "Modality",
        "FrameOfReferenceUID",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyID",
        "ReferringPhysicianName",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    image = _image(to_bytes(ds))
    source = image.source
    assert source is not None and source.modality_code is None
    lung, infection = boxes(1, 128, 128)
    content = encode_seg(source, lung=lung, infection=infection, **MODEL).content  # type: ignore[arg-type]
    seg = segread(content)
    assert seg.Modality == "SEG" and seg.ContentLabel == "LUNGSEG"
    assert seg.FrameOfReferenceUID  # created: the CT IOD requires one
    assert seg.PatientID == "" and seg.PatientName == "" and seg.StudyID == ""
    assert seg.StudyInstanceUID == source.study_uid
    assert "Modality" not in source.headers[0] and "PatientID" not in source.headers[0]
    pixels = seg.get_pixels_by_source_instance([source.instance_uids[0]])
    assert np.array_equal(pixels[0, ..., 1].astype(bool), infection[0])
    path = tmp_path / "lacking.seg.dcm"
    path.write_bytes(content)
    errors, _ = dciodvfy(path)
    assert errors == []


def test_anonymised_uids_come_from_the_file_meta(data_dir: Path, tmp_path: Path) -> None:
    """The JPEG 2000 series has empty SOP Class / Instance, Study and Series UIDs in its
    datasets (kept in the file meta only): the SEG references the file meta's instance UID
    and starts a study of its own."""
    first = (data_dir / J2K_SERIES).iterdir().__next__()
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    assert not str(ds.SOPInstanceUID) and not str(ds.StudyInstanceUID)
    image = _image(first.read_bytes())
    source = image.source
    assert source is not None and source.study_uid is None and source.instance_uids == ()
    lung, infection = threshold_masks(image)
    content = encode_seg(source, lung=lung, infection=infection, **MODEL).content  # type: ignore[arg-type]
    seg = segread(content)
    meta_uid = str(ds.file_meta.MediaStorageSOPInstanceUID)
    assert [u[2] for u in seg.get_source_image_uids()] == [meta_uid]
    assert seg.StudyInstanceUID and seg.StudyInstanceUID != meta_uid
    pixels = seg.get_pixels_by_source_instance([meta_uid])
    assert np.array_equal(pixels[0, ..., 0].astype(bool), lung[0])
    path = tmp_path / "anonymised.seg.dcm"
    path.write_bytes(content)
    errors, _ = dciodvfy(path)
    assert errors == []


def test_enhanced_multiframe_ct(data_dir: Path) -> None:
    image = _image(read(data_dir, "eCT_Supplemental.dcm"))
    assert image.n_frames == 2
    lung, infection = boxes(2, image.height, image.width, seed=7)
    seg = segread(encode_seg(image.source, lung=lung, infection=infection, **MODEL).content)  # type: ignore[arg-type]
    source = image.source
    assert source is not None
    _check_common(seg, source)
    assert seg.NumberOfFrames == 4
    pixels = seg.get_pixels_by_source_frame(source.instance_uids[0], [1, 2])
    assert np.array_equal(pixels[..., 0].astype(bool), lung)
    assert np.array_equal(pixels[..., 1].astype(bool), infection)


def test_enhanced_ct_as_a_volume_maps_frames_back(data_dir: Path) -> None:
    """A multi-frame file assembled as a volume: slices in voxel order with frame numbers;
    masks given in the canonical layout land on their own source frames."""
    volume = assemble_series([read(data_dir, "eCT_Supplemental.dcm")], max_pixels=MAX_PIXELS)
    assert volume.source is not None and len(set(map(id, volume.source.headers))) == 1
    rng = np.random.default_rng(3)
    lung = rng.random(volume.shape) > 0.5
    infection = lung & (rng.random(volume.shape) > 0.7)
    seg = segread(encode_volume_seg(volume, lung=lung, infection=infection, **MODEL).content)  # type: ignore[arg-type]
    stored = in_source_order(volume, lung)
    numbers = list(volume.source.frame_numbers)
    pixels = seg.get_pixels_by_source_frame(volume.source.instance_uids[0], numbers)
    assert np.array_equal(pixels[..., 0].astype(bool), stored)


@pytest.fixture(scope="module")
def chest(data_dir: Path) -> dict[str, object]:
    """The 64-slice chest series assembled from shuffled files, its threshold masks in source
    order and their SEG (made once for the tests below)."""
    files = series_files(data_dir)
    rng = np.random.default_rng(11)
    shuffled = [files[i] for i in rng.permutation(len(files))]
    volume = assemble_series(shuffled, max_pixels=MAX_PIXELS)
    assert volume.source is not None
    hu = np.ascontiguousarray(in_source_order(volume, volume.voxels))
    image = DecodedImage(
        pixels=hu,
        units="hu",
        modality="ct",
        source_format="dicom",
        spacing_mm=volume.spacing_mm[1:],
        source=volume.source,
    )
    lung, infection = threshold_masks(image)
    encoded = encode_seg(volume.source, lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    return {"volume": volume, "lung": lung, "infection": infection, "encoded": encoded}


def test_series_round_trip_and_references(chest: dict[str, object]) -> None:
    volume, lung, infection = chest["volume"], chest["lung"], chest["infection"]
    encoded = chest["encoded"]
    source = volume.source  # type: ignore[attr-defined]
    seg = segread(encoded.content)  # type: ignore[attr-defined]
    _check_common(seg, source)
    assert seg.NumberOfFrames == 64 * 2
    assert seg.file_meta.TransferSyntaxUID == JPEG2000Lossless  # 4 MiB packed > 1 MiB
    assert seg.FrameOfReferenceUID == source.frame_of_reference_uid
    assert lung.any() and infection.any()  # type: ignore[attr-defined]
    pixels = seg.get_pixels_by_source_instance(list(source.instance_uids))
    assert np.array_equal(pixels[..., 0].astype(bool), lung)
    assert np.array_equal(pixels[..., 1].astype(bool), infection)
    # each frame's own reference: the instance whose position is the frame's position
    position = {
        uid: [float(v) for v in h.ImagePositionPatient]
        for uid, h in zip(source.instance_uids, source.headers, strict=True)
    }
    for item in seg.PerFrameFunctionalGroupsSequence:
        referenced = item.DerivationImageSequence[0].SourceImageSequence[0]
        uid = str(referenced.ReferencedSOPInstanceUID)
        frame_position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(frame_position, position[uid], atol=1e-3)


def test_shuffled_frames_keep_their_references(chest: dict[str, object]) -> None:
    """The same masks given in another order (headers and masks permuted together)."""
    volume, lung, infection = chest["volume"], chest["lung"], chest["infection"]
    source = volume.source  # type: ignore[attr-defined]
    order = np.random.default_rng(5).permutation(64)
    shuffled = dataclasses.replace(
        source,
        instance_uids=tuple(source.instance_uids[i] for i in order),
        headers=tuple(source.headers[i] for i in order),
        frame_numbers=tuple(source.frame_numbers[i] for i in order),
    )
    seg = segread(
        encode_seg(shuffled, lung=lung[order], infection=infection[order], **MODEL).content  # type: ignore[index,arg-type]
    )
    pixels = seg.get_pixels_by_source_instance(list(source.instance_uids))
    assert np.array_equal(pixels[..., 0].astype(bool), lung)
    assert np.array_equal(pixels[..., 1].astype(bool), infection)


def test_dciodvfy_series_seg(chest: dict[str, object], tmp_path: Path) -> None:
    """No errors. Warnings allowed, all about the source's own attributes copied into the
    SEG's Patient / Study modules: an empty Study ID ("needed to build DICOMDIR") and the
    single-component Patient's Name (the "retired" PN form) of the de-identified series."""
    path = tmp_path / "series.seg.dcm"
    path.write_bytes(chest["encoded"].content)  # type: ignore[attr-defined]
    errors, warnings_ = dciodvfy(path)
    assert errors == []
    allowed = ("Study ID", "Retired Person Name form")
    assert all(any(a in w for a in allowed) for w in warnings_), warnings_


@pytest.mark.parametrize(
    "name", ["RG1_UNCR.dcm", "CT_small.dcm", "693_J2KR.dcm", "eCT_Supplemental.dcm"]
)
def test_dciodvfy_single_files(data_dir: Path, tmp_path: Path, name: str) -> None:
    """No errors. Warnings (the source's own values, copied): 693's empty Study Date / Time /
    ID and single-component Patient's Name, RG1's single-component Referring Physician,
    CT_small's Patient's Weight 0."""
    image = _image(read(data_dir, name))
    lung, infection = boxes(image.n_frames, image.height, image.width)
    path = tmp_path / f"{name}.seg.dcm"
    path.write_bytes(encode_seg(image.source, lung=lung, infection=infection, **MODEL).content)  # type: ignore[arg-type]
    errors, warnings_ = dciodvfy(path)
    assert errors == []
    allowed = ("DICOMDIR", "Retired Person Name form", "Patient's Weight")
    assert all(any(a in w for a in allowed) for w in warnings_), warnings_


def test_split_lungs_are_left_and_right_segments(data_dir: Path) -> None:
    image = _image(read(data_dir, "CT_small.dcm"))
    left, infection = boxes(1, 128, 128, seed=1)
    right, _ = boxes(1, 128, 128, seed=2)
    seg = segread(
        encode_seg(
            image.source,  # type: ignore[arg-type]
            left_lung=left,
            right_lung=right,
            infection=infection,
            **MODEL,
        ).content
    )
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == ["Left lung", "Right lung", "Infection"]
    sides = [
        _code(s.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0])
        for s in seg.SegmentSequence[:2]
    ]
    assert sides == [("7771000", "SCT"), ("24028007", "SCT")]
    pixels = seg.get_pixels_by_source_instance([image.source.instance_uids[0]])  # type: ignore[union-attr]
    for index, mask in enumerate((left, right, infection)):
        assert np.array_equal(pixels[0, ..., index].astype(bool), mask[0])


def test_empty_masks_keep_every_frame(data_dir: Path) -> None:
    image = _image(read(data_dir, "eCT_Supplemental.dcm"))
    empty = np.zeros((2, image.height, image.width), bool)
    seg = segread(encode_seg(image.source, lung=empty, infection=empty, **MODEL).content)  # type: ignore[arg-type]
    assert seg.NumberOfFrames == 4


def test_compression_threshold(data_dir: Path) -> None:
    image = _image(read(data_dir, "CT_small.dcm"))
    lung, infection = boxes(1, 128, 128)
    encoded = encode_seg(
        image.source,  # type: ignore[arg-type]
        lung=lung,
        infection=infection,
        compress_over_bytes=0,
        **MODEL,
    )
    seg = segread(encoded.content)
    assert seg.file_meta.TransferSyntaxUID == JPEG2000Lossless
    pixels = seg.get_pixels_by_source_instance([image.source.instance_uids[0]])  # type: ignore[union-attr]
    assert np.array_equal(pixels[0, ..., 0].astype(bool), lung[0])


def test_encode_result_through_the_segmenter(data_dir: Path) -> None:
    assert "seg" in ENCODERS and "fhir" in ENCODERS
    segmenter = Segmenter(SegmenterConfig(models_dir=None))
    result = segmenter.segment_bytes(
        read(data_dir, "693_J2KR.dcm"), model="threshold", encoder=encoder_for("seg")
    )
    encoded = result.encoded
    assert encoded is not None and encoded.format == "seg"  # type: ignore[union-attr]
    seg = segread(encoded.content)  # type: ignore[union-attr]
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
    pixels = seg.get_pixels_by_source_instance(list(result.source.instance_uids))  # type: ignore[union-attr]
    assert np.array_equal(pixels[0, ..., 0].astype(bool), result.frames[0].masks.lung)


def test_png_upload_is_refused_on_format(data_dir: Path) -> None:
    png = next((data_dir / "files/covid-qu-ex-layout").rglob("*.png"))
    segmenter = Segmenter(SegmenterConfig(models_dir=None))
    with pytest.raises(InvalidParameterError, match="needs a DICOM source") as caught:
        segmenter.segment_bytes(png.read_bytes(), model="threshold", encoder=encoder_for("seg"))
    assert caught.value.parameter == "format"


def test_impossible_sources_raise_domain_errors(data_dir: Path) -> None:
    ct = pydicom.dcmread(io.BytesIO(read(data_dir, "eCT_Supplemental.dcm")))
    other = pydicom.dcmread(io.BytesIO(read(data_dir, "eCT_Supplemental.dcm")))
    other.SOPInstanceUID = pydicom.uid.generate_uid()
    two = dataclasses.replace(
        dicom_source(ct),
        headers=(dicom_source(ct).headers[0], dicom_source(other).headers[0]),
        frame_numbers=(1, 1),
    )
    lung, infection = boxes(2, 512, 512)
    with pytest.raises(UnsupportedMediaError, match="several multi-frame"):
        encode_seg(two, lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    cr = pydicom.dcmread(io.BytesIO(read(data_dir, "RG1_UNCR.dcm")))
    cr2 = pydicom.dcmread(io.BytesIO(read(data_dir, "RG1_UNCR.dcm")))
    cr2.SOPInstanceUID = pydicom.uid.generate_uid()
    films = SourceRef(
        format="dicom", headers=(dicom_source(cr).headers[0], dicom_source(cr2).headers[0])
    )
    lung, infection = boxes(2, 1955, 1841)
    with pytest.raises(UnsupportedMediaError, match="no Image Position"):
        encode_seg(films, lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError):
        encode_seg(SourceRef(format="png"), lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="masks of"):
        encode_seg(dicom_source(cr), lung=lung[:1, :10], infection=infection[:1, :10], **MODEL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either lung"):
        encode_seg(
            dicom_source(cr), lung=lung[:1], left_lung=lung[:1], infection=infection[:1], **MODEL
        )  # type: ignore[arg-type]


def test_source_warnings_with_the_patient_name_are_silenced(data_dir: Path) -> None:
    """highdicom warns about 693's single-component Patient's Name, quoting it."""
    image = _image(read(data_dir, "693_J2KR.dcm"))
    name = str(image.source.headers[0].PatientName)  # type: ignore[union-attr]
    lung, infection = boxes(1, 512, 512)
    with warnings.catch_warnings(record=True) as seen:
        encode_seg(image.source, lung=lung, infection=infection, **MODEL)  # type: ignore[arg-type]
    assert not [w for w in seen if name in str(w.message)]


def test_codes_are_those_of_pydicoms_tables() -> None:
    from pydicom.sr.codedict import codes

    assert codes.SCT.AnatomicalStructure == seg_codes.ANATOMICAL_STRUCTURE
    assert codes.SCT.Lung == seg_codes.LUNG
    assert (
        codes.SCT.MorphologicallyAbnormalStructure == seg_codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE
    )
    assert codes.DCM.Infiltrate == seg_codes.INFILTRATE
    assert codes.SCT.Left == seg_codes.LEFT and codes.SCT.Right == seg_codes.RIGHT
    assert codes.DCM.ArtificialIntelligence == seg_codes.ARTIFICIAL_INTELLIGENCE
    for text in (dicom_seg.SERIES_DESCRIPTION, dicom_seg.CONTENT_DESCRIPTION):
        assert len(text) <= 64  # LO
