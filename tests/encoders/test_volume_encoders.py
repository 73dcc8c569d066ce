"""The volume encoders: the NIfTI label map lines up with the input (NIfTI: shape, affine and
header as stored; DICOM: the geometry of the files, LPS -> RAS), and the per-slice RLE JSON is
in the input's slice order with the upload positions."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from service.encoders import nifti, rle, slices
from service.imaging.orientation import RAS_FROM_LPS
from service.models.segmenter import Segmenter, SegmenterConfig
from service.pipeline.volume import LUNG
from tests.imaging.dicom_copies import CHEST, edited, parse, position, series_paths, set_pixels

EXAMPLE = "files/nifti/example_ct_sm.nii.gz"


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterConfig(None))  # the threshold segmenter


@pytest.fixture(scope="module")
def chest8(data_dir: Path) -> list[bytes]:
    """Eight slices of the chest series from its middle (z -274 .. -309 mm)."""
    return [p.read_bytes() for p in series_paths(data_dir, CHEST)[30:38]]


def _read(content: bytes) -> nib.Nifti1Image:
    raw = gzip.decompress(content)
    image = nib.Nifti1Image.from_bytes(raw) if raw[:4] == b"\x5c\x01\x00\x00" else None
    return image if image is not None else nib.Nifti2Image.from_bytes(raw)


def test_nifti_input_keeps_shape_affine_and_header(segmenter, data_dir) -> None:
    stored = (data_dir / EXAMPLE).read_bytes()
    source = nib.Nifti1Image.from_bytes(gzip.decompress(stored))
    result = segmenter.segment_volume(segmenter.load_volume([stored]))
    encoded = nifti.encode_volume(result)
    assert (encoded.format, encoded.media_type) == ("nifti", "application/gzip")
    assert encoded.filename == "labels.nii.gz" and encoded.content[:2] == b"\x1f\x8b"
    assert nifti.encode_volume(result).content == encoded.content  # deterministic bytes
    out = _read(encoded.content)
    assert out.shape == source.shape == (122, 101, 30)
    np.testing.assert_array_equal(out.affine, source.affine)
    for key in ("sform_code", "qform_code", "pixdim", "xyzt_units", "srow_x", "quatern_b"):
        np.testing.assert_array_equal(out.header[key], source.header[key])
    assert out.get_data_dtype() == np.uint8 and out.header.get_intent()[0] == "label"
    labels = np.asanyarray(out.dataobj)
    assert np.array_equal(labels, result.labels_in_input())
    assert set(np.unique(labels)) <= {0, 1, 2} and (labels >= LUNG).any()
    hu = np.asanyarray(source.dataobj)
    assert float(np.median(hu[labels >= LUNG])) < -700  # the mask lies on the input's air


def test_qform_only_four_d_and_nifti2_inputs(segmenter) -> None:
    data = np.full((20, 16, 6, 1), -1000, np.int16)
    data[4:16, 3:13, :, 0] = 40
    data[6:9, 5:11, 1:5, 0] = data[11:14, 5:11, 1:5, 0] = -900
    qform = np.array([[-2.0, 0, 0, 30], [0, 0, 2.0, -5], [0, -3.0, 0, 7], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data, None)
    image.header.set_qform(qform, code=2)
    image.header.set_sform(None, code=0)
    result = segmenter.segment_volume(segmenter.load_volume([image.to_bytes()]))
    out = _read(nifti.encode_volume(result).content)
    assert out.shape == (20, 16, 6, 1)
    assert (int(out.header["sform_code"]), int(out.header["qform_code"])) == (0, 2)
    np.testing.assert_allclose(out.header.get_qform(), qform)
    assert np.array_equal(np.asanyarray(out.dataobj)[..., 0], result.labels_in_input())
    two = nib.Nifti2Image(data[..., 0], qform)
    out2 = _read(
        nifti.encode_volume(
            segmenter.segment_volume(segmenter.load_volume([two.to_bytes()]))
        ).content
    )
    assert isinstance(out2, nib.Nifti2Image) and out2.shape == (20, 16, 6)
    np.testing.assert_allclose(out2.affine, qform)


def _transposed(ds) -> None:
    row, column = (float(v) for v in ds.PixelSpacing)
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    ds.PixelSpacing = [column, row]
    set_pixels(ds, ds.pixel_array.T)


@pytest.mark.parametrize("transpose", [False, True])
def test_dicom_series_nifti_follows_the_dicom_geometry(segmenter, chest8, transpose) -> None:
    files = [edited(d, _transposed) for d in chest8] if transpose else chest8
    result = segmenter.segment_volume(segmenter.load_volume(files))
    out = _read(nifti.encode_volume(result).content)
    datasets = [parse(d) for d in files]
    normal = np.cross(*(np.array(datasets[0].ImageOrientationPatient, float).reshape(2, 3)))
    order = sorted(range(len(files)), key=lambda i: float(position(datasets[i]) @ normal))
    labels = np.asanyarray(out.dataobj)
    assert labels.shape == (512, 512, 8)  # (i: column, j: row, k: slice in sorted order)
    assert np.array_equal(labels, result.labels_in_input().transpose(2, 1, 0))
    assert (int(out.header["sform_code"]), int(out.header["qform_code"])) == (1, 1)
    for i, j, k in [(0, 0, 0), (511, 0, 3), (100, 400, 7), (256, 300, 5)]:
        ds = datasets[order[k]]
        row_dir, col_dir = np.array(ds.ImageOrientationPatient, float).reshape(2, 3)
        spacing = [float(v) for v in ds.PixelSpacing]
        lps = position(ds) + i * spacing[1] * row_dir + j * spacing[0] * col_dir
        np.testing.assert_allclose(
            out.affine @ [i, j, k, 1], [*(RAS_FROM_LPS[:3, :3] @ lps), 1], atol=1e-4
        )  # the header holds float32
        hu = ds.pixel_array[j, i] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        if labels[i, j, k] >= LUNG:
            assert hu < -300


def test_both_dicom_storages_put_the_lungs_at_the_same_place(segmenter, chest8) -> None:
    centres = []
    for files in (chest8, [edited(d, _transposed) for d in chest8]):
        out = _read(
            nifti.encode_volume(segmenter.segment_volume(segmenter.load_volume(files))).content
        )
        index = np.argwhere(np.asanyarray(out.dataobj) >= LUNG).mean(axis=0)
        centres.append(out.affine @ [*index, 1.0])
    np.testing.assert_allclose(centres[0], centres[1], atol=1e-6)


def test_slices_json_in_input_order_with_upload_positions(segmenter, chest8) -> None:
    order = list(range(8))
    random.Random(3).shuffle(order)
    upload = [chest8[i] for i in order]
    result = segmenter.segment_volume(segmenter.load_volume(upload))
    encoded = slices.encode_volume(result)
    assert (encoded.format, encoded.media_type, encoded.filename) == (
        "rle",
        "application/json",
        "slices.json",
    )
    document = json.loads(encoded.content)
    assert document["format"] == "lungseg-slices-rle" and document["slice_axis"] == 0
    assert document["shape"] == [8, 512, 512]
    labels = result.labels_in_input()
    zs = [float(position(parse(upload[e["upload_index"]]))[2]) for e in document["slices"]]
    assert zs == sorted(zs)  # ascending along the normal (+z here)
    for entry in document["slices"]:
        index = entry["index"]
        assert entry["frame"] == 0 and result.slices[entry["canonical_index"]].input_index == index
        assert upload[entry["upload_index"]] is chest8[order[entry["upload_index"]]]
        lung = rle.decode(entry["lung"])
        assert np.array_equal(lung, labels[index] >= LUNG)
        coco = {"size": entry["lung"]["size"], "counts": entry["lung"]["counts"].encode()}
        assert np.array_equal(coco_mask.decode(coco).astype(bool), lung)
        assert np.array_equal(rle.decode(entry["infection"]), labels[index] == 2)


def test_slices_json_of_a_transposed_nifti(segmenter, data_dir) -> None:
    image = nib.load(data_dir / EXAMPLE)
    data = np.ascontiguousarray(np.asanyarray(image.dataobj).transpose(2, 0, 1))
    affine = image.affine[:, [2, 0, 1, 3]]
    result = segmenter.segment_volume(
        segmenter.load_volume([nib.Nifti1Image(data, affine).to_bytes()])
    )
    document = slices.slices_document(result)
    assert document["slice_axis"] == 0 and document["shape"] == [30, 122, 101]
    assert "upload_index" not in document["slices"][0]
    labels = result.labels_in_input()
    for entry in document["slices"][::7]:
        assert np.array_equal(rle.decode(entry["lung"]), labels[entry["index"]] >= LUNG)
