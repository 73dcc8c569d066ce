"""The volume path on arrays made here: 3-D components, the 3-D cleanup, the measures (mL from
the affine, left / right from the patient x), and ``Segmenter.segment_volume`` end to end."""

from __future__ import annotations

from collections import deque

import nibabel as nib
import numpy as np
import pytest

from service.imaging.nifti import decode_nifti
from service.imaging.orientation import RAS_FROM_LPS
from service.imaging.volume import Volume
from service.models.segmenter import Segmenter, SegmenterConfig
from service.pipeline.params import DecisionParams, PostprocessParams
from service.pipeline.result import ModelInfo, Prediction
from service.pipeline.volume import (
    INFECTION,
    LUNG,
    fill_each_hole,
    postprocess_volume,
    segment_slices,
    slice_params,
)
from service.pipeline.volume_components import label_3d, slice_ids
from service.pipeline.volume_measure import volume_result

INFO = ModelInfo("fake-ct", "0", "fake", "ct")


def _bfs_components(mask: np.ndarray) -> int:
    """6-connected components counted by a plain breadth-first search."""
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            k, r, c = queue.popleft()
            for dk, dr, dc in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
                n = (k + dk, r + dr, c + dc)
                if all(0 <= n[i] < mask.shape[i] for i in range(3)) and mask[n] and not seen[n]:
                    seen[n] = True
                    queue.append(n)
    return count


@pytest.mark.parametrize("seed", range(5))
def test_label_3d_matches_a_breadth_first_search(seed) -> None:
    mask = np.random.default_rng(seed).random((6, 9, 11)) > 0.55
    found = label_3d(mask)
    assert found.count == _bfs_components(mask)
    assert found.sizes.sum() == mask.sum()
    ids = np.zeros(mask.shape, np.int64)
    for k in range(mask.shape[0]):
        ids[k][found.box] = slice_ids(found, mask[k], k)
    assert set(np.unique(ids[mask])) == set(range(1, found.count + 1))
    assert not ids[~mask].any()
    # diagonal neighbours are not connected (6-connectivity)
    diagonal = np.zeros((2, 2, 2), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True
    assert label_3d(diagonal).count == 2
    assert label_3d(np.zeros((3, 4, 4), bool)).count == 0


def _cleaned(labels: np.ndarray, params: PostprocessParams | None = None) -> np.ndarray:
    postprocess_volume(labels, params or PostprocessParams())
    return labels


def _labels() -> np.ndarray:
    """Two lungs (boxes), an apex in two pieces on its top slice, a speck and bowel gas."""
    labels = np.zeros((10, 40, 60), np.uint8)
    labels[1:8, 5:35, 5:25] = LUNG  # right lung (low columns)
    labels[1:8, 5:35, 35:55] = LUNG  # left lung
    labels[8, 5:15, 5:12] = LUNG  # apex piece 1 (joined to the lung below)
    labels[8, 20:30, 15:22] = LUNG  # apex piece 2, separate on this slice
    labels[3, 10:20, 10:20] = 0  # a hole in the right lung
    labels[4, 12:14, 40:42] = INFECTION
    labels[0, 38:40, 0:3] = LUNG  # a speck (far below 10 % of a lung)
    labels[9, 0:3, 56:60] = INFECTION  # infection outside every lung
    return labels


def test_postprocess_keeps_apex_pieces_and_drops_specks() -> None:
    labels = _cleaned(_labels())
    assert (labels[8, 5:15, 5:12] == LUNG).all() and (labels[8, 20:30, 15:22] == LUNG).all()
    assert not labels[0].any() and not labels[9].any()  # speck and stray infection dropped
    assert (labels[3, 10:20, 10:20] == LUNG).all()  # the hole is filled
    assert (labels[4, 12:14, 40:42] == INFECTION).all()
    assert label_3d(labels).count == 2
    no_fill = _cleaned(_labels(), PostprocessParams(fill_holes=False))
    assert not no_fill[3, 10:20, 10:20].any()


def test_holes_are_filled_per_component_not_between_lungs() -> None:
    ring = np.zeros((20, 20), bool)  # two C shapes that enclose the space between them
    ring[2:18, 2:5] = ring[2:5, 2:9] = ring[15:18, 2:9] = True
    ring[2:18, 15:18] = ring[2:5, 11:18] = ring[15:18, 11:18] = True
    filled = fill_each_hole(ring)
    assert not filled[8:12, 8:12].any()
    closed = ring.copy()
    closed[2:5, 9:11] = closed[15:18, 9:11] = True  # one ring now: its hole is filled
    assert fill_each_hole(closed)[5:15, 5:15].all()


def _volume(labels_shape=(10, 40, 60), flip_x: bool = False) -> Volume:
    """A canonical volume of 5 x 3 x 2.5 mm voxels; HU: body 0, air outside (-1000)."""
    columns = labels_shape[2]
    voxels = np.full(labels_shape, -1000.0, np.float32)
    voxels[:, 2:38, 2:58] = 0.0
    affine = np.array([[0, 0, 2.5, -30.0], [0, 3.0, 0, -20.0], [5.0, 0, 0, 100.0], [0, 0, 0, 1.0]])
    data = voxels.transpose(2, 1, 0)  # (x, y, z) for NIfTI, LPS axes
    lps = affine @ np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    if flip_x:  # the same patient stored with x running the other way
        data = data[::-1]
        lps = lps @ np.array([[-1, 0, 0, columns - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])
    image = nib.Nifti1Image(np.ascontiguousarray(data), RAS_FROM_LPS @ lps)
    return decode_nifti(image.to_bytes(), max_pixels=10**7)


def test_measures_from_the_affine_and_the_patient_sides() -> None:
    volume = _volume()
    assert volume.spacing_mm == (5.0, 3.0, 2.5)
    labels = _cleaned(_labels())
    result = volume_result(volume, labels, [None] * 10, INFO, "numpy", "fp32", None)
    again = _labels()
    histograms = postprocess_volume(again, PostprocessParams())
    from_step = volume_result(volume, again, [None] * 10, INFO, "numpy", "fp32", None, histograms)
    assert from_step.lungs == result.lungs  # the 3-D step's histograms = found again
    voxel_ml = 5.0 * 3.0 * 2.5 / 1000
    assert result.voxel_ml == pytest.approx(voxel_ml)
    right = 7 * 30 * 20 + 10 * 7 + 10 * 7  # box + apex pieces (the hole filled)
    left = 7 * 30 * 20
    assert result.lungs.split == "components"
    assert result.lungs.right.volume_ml == pytest.approx(right * voxel_ml)
    assert result.lungs.left.volume_ml == pytest.approx(left * voxel_ml)
    assert result.lungs.left.infection_volume_ml == pytest.approx(4 * voxel_ml)
    assert result.lungs.right.infection_volume_ml == 0.0
    assert result.lung_volume_ml == pytest.approx((left + right) * voxel_ml)
    assert result.infection_percent == pytest.approx(100 * 4 / (left + right))
    assert result.lung_found and not result.infection_detected  # 320 mL, infection 0.15 mL
    assert result.warnings == ()
    first = result.slices[1]
    assert (first.index, first.input_index, first.upload_index) == (1, 1, None)
    assert first.z_mm == pytest.approx(105.0) and first.lung_area_px == 2 * 600
    assert first.lung_area_mm2 == pytest.approx(1200 * 3.0 * 2.5)
    assert result.labels_in_input().shape == (60, 40, 10)


def test_lung_found_and_infection_detected_rules() -> None:
    volume = _volume()
    labels = _cleaned(_labels())
    labels[5, 10:15, 40:46] = INFECTION  # 30 voxels + 4: 1.3 mL, 0.4 % of the lung
    result = volume_result(volume, labels.copy(), [None] * 10, INFO, "n", "p", None)
    assert result.infection_volume_ml == pytest.approx(34 * 0.0375)
    assert result.infection_percent < 0.5 and not result.infection_detected
    labels[6, 10:15, 40:46] = INFECTION  # 64 voxels: 2.4 mL, 0.75 %
    assert volume_result(volume, labels, [None] * 10, INFO, "n", "p", None).infection_detected
    small = np.zeros_like(labels)
    small[4:6, 10:20, 10:19] = LUNG  # 180 voxels: 6.75 mL
    result = volume_result(volume, small, [None] * 10, INFO, "n", "p", None)
    assert not result.lung_found and not result.infection_detected
    assert any("no lung of a plausible size was found (7 mL" in w for w in result.warnings)
    empty = volume_result(volume, np.zeros_like(labels), [None] * 10, INFO, "n", "p", None)
    assert empty.lung_volume_ml == 0.0 and empty.lungs.split == "none"


def test_left_and_right_follow_the_patient_not_the_columns() -> None:
    """Stored with x reversed, the canonical volume is the same: so are the sides."""
    a, b = _volume(), _volume(flip_x=True)
    assert np.array_equal(a.voxels, b.voxels)
    np.testing.assert_allclose(a.affine, b.affine)
    labels = _cleaned(_labels())
    ra = volume_result(a, labels.copy(), [None] * 10, INFO, "numpy", "fp32", None)
    rb = volume_result(b, labels.copy(), [None] * 10, INFO, "numpy", "fp32", None)
    assert ra.lungs == rb.lungs
    assert np.array_equal(rb.labels_in_input(), ra.labels_in_input()[::-1])


def test_joined_lungs_are_cut_at_the_gap_and_one_lung_is_named_by_its_side() -> None:
    volume = _volume()
    labels = _labels()
    labels[2:4, 5:8, 25:35] = LUNG  # an anterior junction: one 3-D component
    result = volume_result(volume, _cleaned(labels), [None] * 10, INFO, "n", "p", None)
    assert result.lungs.split == "midline"
    assert any("joined in 3-D" in w for w in result.warnings)
    total = result.lungs.left.volume_ml + result.lungs.right.volume_ml
    assert total == pytest.approx(result.lung_volume_ml)
    assert result.lungs.left.volume_ml == pytest.approx(4200 * result.voxel_ml, rel=0.02)
    only_left = _labels()
    only_left[:, :, :30] = 0
    result = volume_result(volume, only_left, [None] * 10, INFO, "n", "p", None)
    assert result.lungs.split == "one_lung" and result.lungs.right.volume_ml == 0.0
    assert "only one lung was found (the left)" in " ".join(result.warnings)


class Pieces:
    """Lung = four 6 x 6 squares of every 24 x 24 slice: more than the card's two components."""

    info = INFO
    postprocess = PostprocessParams(lung_components=2, min_component_fraction=0.1)
    decision = DecisionParams.a_priori("cxr")
    provider = "test"
    precision = "fp32"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def prepare(self, frame: np.ndarray, units: str) -> np.ndarray:
        return frame

    def infer(self, inputs: list[np.ndarray]) -> list[Prediction]:
        self.batches.append(len(inputs))
        masks = np.zeros((2, 24, 24), bool)
        for r, c in ((2, 2), (2, 16), (16, 2), (16, 16)):
            masks[0, r : r + 6, c : c + 6] = True
        masks[1, 3, 3] = True
        return [Prediction(masks=masks, score=0.25) for _ in inputs]


def test_segment_slices_keeps_every_piece_per_slice_and_reports_progress() -> None:
    data = np.full((24, 24, 5), -1000, np.int16)
    volume = decode_nifti(nib.Nifti1Image(data, np.eye(4)).to_bytes(), max_pixels=10**6)
    backend = Pieces()
    seen: list[tuple[int, int]] = []
    labels, scores = segment_slices(
        backend, volume, chunk=2, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(2, 5), (4, 5), (5, 5)] and backend.batches == [2, 2, 1]
    assert scores == [0.25] * 5
    assert np.count_nonzero(labels[0] >= LUNG) == 4 * 36  # all four pieces: not cut in 2-D
    assert slice_params(backend.postprocess).lung_components > 4
    assert slice_params(backend.postprocess).fill_holes == backend.postprocess.fill_holes


def test_segmenter_segment_volume_times_stages_and_falls_back() -> None:
    segmenter = Segmenter(SegmenterConfig(None, chunk_frames=8))
    volume = _volume()
    calls: list[tuple[int, int]] = []
    result = segmenter.segment_volume(volume, "unet", lambda d, t: calls.append((d, t)))
    assert calls == [(8, 10), (10, 10)]
    assert result.model.kind == "threshold" and result.fallback is not None
    assert {"preprocess", "infer", "postprocess", "volume_postprocess", "total"} <= set(
        result.timings_ms
    )
    assert result.labels.shape == volume.shape and result.labels.dtype == np.uint8
    assert "VolumeSegmentation" in repr(result)
    assert segmenter.segment_volume(volume, "threshold").fallback is None
