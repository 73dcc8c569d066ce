"""The whole volume path (assemble / decode -> segment_volume -> masks in the input's layout)
on real CT stored in other axis orders, flips and upload orders, and the lungs against a
HU-based reference.

Inputs: the real 64-slice chest series (``files/ct-series-chest-hu``: 5 mm apart, z -439 ..
-124 mm; it covers the whole lungs, from below the costophrenic recesses to above the apices:
the reference mask below is empty on the first and last slices), copies of it edited as a
scanner would store the same patient otherwise (columns or rows reversed, both, rows and columns
transposed: each also changes the slice normal and so the sorted slice order), the series in a
shuffled upload order, NIfTI files of it in RAS, LPS, LAS, ASR (transposed) and RAI (reversed
slice order), and the real ``example_ct_sm.nii.gz`` in the same orientations.

Every variant must give the reference's masks mapped the same way (Dice >= 0.99; they are
identical, since the canonical voxels are) and the same left / right volumes (within 1 %). The
expected input-layout masks are built here with plain numpy flips / transposes and nibabel's
orientation tools, not with the code under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

from service.imaging.orientation import RAS_FROM_LPS
from service.imaging.volume import Volume
from service.models.segmenter import Segmenter, SegmenterConfig
from service.pipeline.morphology import fill_holes
from service.pipeline.volume import LUNG, VolumeSegmentation
from service.pipeline.volume_components import label_3d, slice_labels
from tests.conftest import REPO_ROOT
from tests.imaging.dicom_copies import CHEST, edited, position, series_paths, set_pixels

EXAMPLE = "files/nifti/example_ct_sm.nii.gz"
NIFTI_CODES = [("L", "P", "S"), ("L", "A", "S"), ("A", "S", "R"), ("R", "A", "I")]


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    built = Segmenter(SegmenterConfig(REPO_ROOT / "models", providers="cpu"))
    yield built
    built.close()


@pytest.fixture(scope="module")
def chest(data_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in series_paths(data_dir, CHEST)]


@pytest.fixture(scope="module")
def reference(segmenter: Segmenter, chest: list[bytes]) -> tuple[Volume, VolumeSegmentation]:
    volume = segmenter.load_volume(chest)
    return volume, segmenter.segment_volume(volume, "threshold")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(a & b) / total


def _columns_reversed(ds) -> None:
    x, y, z = position(ds)
    ds.ImagePositionPatient = [x + (ds.Columns - 1) * float(ds.PixelSpacing[1]), y, z]
    ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    set_pixels(ds, ds.pixel_array[:, ::-1])


def _rows_reversed(ds) -> None:
    x, y, z = position(ds)
    ds.ImagePositionPatient = [x, y + (ds.Rows - 1) * float(ds.PixelSpacing[0]), z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    set_pixels(ds, ds.pixel_array[::-1])


def _both_reversed(ds) -> None:
    _columns_reversed(ds)
    x, y, z = position(ds)
    ds.ImagePositionPatient = [x, y + (ds.Rows - 1) * float(ds.PixelSpacing[0]), z]
    ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
    set_pixels(ds, ds.pixel_array[::-1])


def _transposed(ds) -> None:
    """Rows along +y and columns along +x: the slice normal is -z (reversed slice order)."""
    row, column = (float(v) for v in ds.PixelSpacing)
    ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    ds.PixelSpacing = [column, row]
    set_pixels(ds, ds.pixel_array.T)


# variant: (edit of each file, the reference's input-layout labels -> this variant's layout)
DICOM_VARIANTS: dict[str, tuple[Callable | None, Callable[[np.ndarray], np.ndarray]]] = {
    "as stored (LPS)": (None, lambda a: a),
    "columns reversed (x to the right)": (_columns_reversed, lambda a: a[::-1, :, ::-1]),
    "rows reversed (y to the front)": (_rows_reversed, lambda a: a[::-1, ::-1, :]),
    "rows and columns reversed": (_both_reversed, lambda a: a[:, ::-1, ::-1]),
    "rows and columns transposed": (_transposed, lambda a: a[::-1].transpose(0, 2, 1)),
}


def _same(result: VolumeSegmentation, expected: np.ndarray, reference: VolumeSegmentation):
    got = result.labels_in_input()
    assert got.shape == expected.shape
    assert dice(got >= LUNG, expected >= LUNG) >= 0.99
    assert dice(got == 2, expected == 2) >= 0.99
    for side in ("left", "right"):
        ours, theirs = getattr(result.lungs, side), getattr(reference.lungs, side)
        assert ours.volume_ml == pytest.approx(theirs.volume_ml, rel=0.01)
        assert ours.infection_volume_ml == pytest.approx(theirs.infection_volume_ml, rel=0.01)


@pytest.mark.parametrize("name", list(DICOM_VARIANTS))
def test_dicom_orientations_give_the_same_masks(segmenter, chest, reference, name) -> None:
    edit, expected_of = DICOM_VARIANTS[name]
    files = chest if edit is None else [edited(data, edit) for data in chest]
    ref = reference[1]
    volume = segmenter.load_volume(files)
    result = segmenter.segment_volume(volume, "threshold")
    expected = expected_of(ref.labels_in_input())
    assert np.array_equal(volume.mask_to_input(ref.labels), expected)  # our mapping agrees
    _same(result, expected, ref)
    assert result.lungs.split == ref.lungs.split
    assert ref.lung_found and 4000 < ref.lung_volume_ml < 7000


def test_shuffled_upload_gives_identical_results(segmenter, chest, reference) -> None:
    _, ref = reference
    order = list(range(len(chest)))
    random.Random(14).shuffle(order)
    result = segmenter.segment_volume(segmenter.load_volume([chest[i] for i in order]), "threshold")
    assert np.array_equal(result.labels, ref.labels)
    assert np.array_equal(result.labels_in_input(), ref.labels_in_input())
    assert result.lungs == ref.lungs and result.lung_volume_ml == ref.lung_volume_ml
    for ours, theirs in zip(result.slices, ref.slices, strict=True):
        assert order[ours.upload_index] == theirs.upload_index
        assert (ours.index, ours.input_index, ours.z_mm) == (
            theirs.index,
            theirs.input_index,
            theirs.z_mm,
        )
        assert ours.lung_area_px == theirs.lung_area_px


def _nifti(data: np.ndarray, affine_ras: np.ndarray, codes) -> tuple[bytes, np.ndarray]:
    """``data`` stored with axes ``codes``; returns the file and its nibabel transform."""
    start = nib.orientations.io_orientation(affine_ras)
    transform = ornt_transform(start, axcodes2ornt(codes))
    moved = apply_orientation(data, transform)
    affine = affine_ras @ nib.orientations.inv_ornt_aff(transform, data.shape)
    assert nib.aff2axcodes(affine) == tuple(codes)
    return nib.Nifti1Image(moved, affine).to_bytes(), transform


@pytest.fixture(scope="module")
def chest_ras(segmenter, reference) -> VolumeSegmentation:
    """The chest series as a NIfTI in RAS, segmented."""
    ref_volume, _ = reference
    hu = ref_volume.voxels.astype(np.int16)
    ras_file, _ = _nifti(hu, RAS_FROM_LPS @ ref_volume.affine, ("R", "A", "S"))
    return segmenter.segment_volume(segmenter.load_volume([ras_file]), "threshold")


@pytest.mark.parametrize("codes", NIFTI_CODES)
def test_nifti_of_the_chest_in_other_orientations(segmenter, reference, chest_ras, codes) -> None:
    ref_volume, ref = reference
    hu = ref_volume.voxels.astype(np.int16)  # canonical: (S, P, L) in nibabel's codes
    data, _ = _nifti(hu, RAS_FROM_LPS @ ref_volume.affine, codes)
    result = segmenter.segment_volume(segmenter.load_volume([data]), "threshold")
    to_codes = ornt_transform(axcodes2ornt(("R", "A", "S")), axcodes2ornt(codes))
    expected = apply_orientation(chest_ras.labels_in_input(), to_codes)
    _same(result, expected, chest_ras)
    assert dice(chest_ras.labels >= LUNG, ref.labels >= LUNG) >= 0.99  # as the DICOM series
    assert result.input_slice_axis == [c in "SI" for c in codes].index(True)


@pytest.mark.parametrize("codes", NIFTI_CODES)
def test_example_nifti_in_other_orientations(segmenter, data_dir, codes) -> None:
    stored = (data_dir / EXAMPLE).read_bytes()
    reference = segmenter.segment_volume(segmenter.load_volume([stored]), "threshold")
    image = nib.load(data_dir / EXAMPLE)
    data, _ = _nifti(np.asanyarray(image.dataobj), image.affine, codes)
    result = segmenter.segment_volume(segmenter.load_volume([data]), "threshold")
    start = nib.orientations.io_orientation(image.affine)
    expected = apply_orientation(
        reference.labels_in_input(), ornt_transform(start, axcodes2ornt(codes))
    )
    assert reference.lung_volume_ml > 0
    _same(result, expected, reference)


def hu_reference(volume: Volume) -> np.ndarray:
    """A lung mask from Hounsfield units alone (for the Dice of the models' lungs).

    1. Body, per slice: the largest 8-connected component above -500 HU, holes filled (the
       lungs, the airways and bowel gas become part of it; the air around the body and the
       table do not).
    2. Air inside the body: below -400 HU.
    3. Trachea and main bronchi, removed: starting on the top slice from the air components
       within 30 mm of the image's mid-column, followed down slice by slice through the air
       components that overlap the previous slice's airway and are smaller than 15 cm² (a
       tube; a lung is far larger), until none is left (the carina, where the bronchi enter
       the lungs).
    4. Lungs: the two largest 6-connected 3-D components of what is left, each at least a
       tenth of the largest (the same rule as the pipeline's); bowel gas and specks drop out.
    5. Holes filled per slice, each 2-D component on its own (vessels inside the lung count as
       lung, as in expert lung masks; the mediastinum does not).
    """
    hu = volume.voxels
    slices, rows, columns = hu.shape
    pixel_mm2 = volume.spacing_mm[1] * volume.spacing_mm[2]
    air = np.zeros(hu.shape, bool)
    for k in range(slices):
        count, labels, stats, _ = cv2.connectedComponentsWithStats((hu[k] > -500).astype(np.uint8))
        if count > 1:
            body = fill_holes(labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))
            air[k] = (hu[k] < -400) & body
    airway, previous = np.zeros(hu.shape, bool), None
    for k in range(slices - 1, -1, -1):
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(air[k].astype(np.uint8))
        keep = []
        for i in range(1, count):
            if stats[i, cv2.CC_STAT_AREA] * pixel_mm2 > 1500:
                continue
            if previous is None:
                if abs(centroids[i][0] - columns / 2) * volume.spacing_mm[2] < 30:
                    keep.append(i)
            elif (previous & (labels == i)).any():
                keep.append(i)
        if not keep:
            break
        airway[k] = previous = np.isin(labels, keep)
    lung = air & ~airway
    found = label_3d(lung)
    kept = found.largest(2, 0.1)
    reference = np.zeros(hu.shape, bool)
    for k in range(slices):
        if len(found.ids[k]) > 1:
            selected = np.zeros((rows, columns), bool)
            selected[found.box] = slice_labels(found, lung[k], k, kept)
            count, labels, _, _ = cv2.connectedComponentsWithStats(selected.astype(np.uint8))
            for i in range(1, count):
                reference[k] |= fill_holes(labels == i)
    return reference


def test_unet_and_threshold_lungs_against_the_hu_reference(segmenter, reference) -> None:
    """Measured on this CPU (int8 U-Net): Dice unet-ct 2.0.0 0.972 (1.0.0: 0.969), threshold
    0.989 (issue 13's target 0.95); the floors are a little below."""
    volume, threshold = reference
    truth = hu_reference(volume)
    assert not truth[0].any() and not truth[-1].any()  # the series covers the whole lungs
    voxel_ml = abs(float(np.linalg.det(volume.affine[:3, :3]))) / 1000
    assert 4000 < truth.sum() * voxel_ml < 7000
    unet = segmenter.segment_volume(volume, "unet")
    assert unet.model.name == "unet-ct" and unet.fallback is None
    scores = {
        "unet": dice(unet.labels >= LUNG, truth),
        "threshold": dice(threshold.labels >= LUNG, truth),
    }
    print(f"lung Dice against the HU reference: {scores}")
    assert scores["unet"] >= 0.96
    assert scores["threshold"] >= 0.98
    # lungs on every slice with 10 cm² or more of lung in the reference, none on slices without
    # (measured with unet-ct 2.0.0: missed are the two basal slices with 1-2.5 cm² of lung in
    # the reference, partial volume at the diaphragm's dome, and the apex slice 1-09 with
    # 9.1 cm², where the network outlines no lung at all; 1.0.0 found that one. Slice 0,
    # without lung, had a 2-D false lung that the 3-D step removed)
    pixel_mm2 = volume.spacing_mm[1] * volume.spacing_mm[2]
    reference_mm2 = truth.reshape(len(truth), -1).sum(axis=1) * pixel_mm2
    found = (unet.labels >= LUNG).reshape(len(truth), -1).any(axis=1)
    assert found[reference_mm2 >= 1000].all()
    assert not found[reference_mm2 == 0].any()
    # whole adult lungs, the right one (three lobes, the heart on the left) the larger
    assert unet.lung_found
    for side in (unet.lungs.left, unet.lungs.right):
        assert 1000 < side.volume_ml < 4500
    assert unet.lungs.right.volume_ml > unet.lungs.left.volume_ml
    # the patient's mass (left upper lobe, SOURCE.txt) is a tumour, not COVID-19: no infection
    # is reported (1.x marked it as infection). Not evidence of specificity: this series'
    # slices 1-01..1-43 trained the 2.0.0 decision head as its only CT negatives (docs/models.md)
    assert not unet.infection_detected and unet.infection_volume_ml == 0
    assert unet.infection_percent == 0.0
