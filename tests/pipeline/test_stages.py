"""Preprocessing, postprocessing and measurement with tiny arrays made in the test."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import ModelLoadError
from service.pipeline import measure, morphology, postprocess, preprocess
from service.pipeline.params import Clahe, CtWindow, PostprocessParams, PreprocessParams


def test_window_maps_hu_to_unit_range():
    hu = np.array([[-2000.0, -1250.0, -500.0, 250.0, 3000.0]])
    shown = preprocess.window_hu(hu, CtWindow(level=-500, width=1500))
    np.testing.assert_allclose(shown, [[0.0, 0.0, 0.5, 1.0, 1.0]])


def test_display_input_skips_windowing():
    frame = np.array([[0.0, 0.25], [0.75, 1.5]], dtype=np.float32)
    shown = preprocess.to_display(frame, "display", PreprocessParams())
    np.testing.assert_array_equal(shown, [[0.0, 0.25], [0.75, 1.0]])


def test_preprocess_resizes_and_normalises():
    params = PreprocessParams(size=(4, 6), mean=0.5, std=0.25)
    out = preprocess.preprocess(np.full((40, 30), 0.75, np.float32), "display", params)
    assert out.shape == (1, 4, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


def test_ct_hu_path_windows_minmaxes_and_applies_clahe():
    hu = np.linspace(-1200, 400, 64 * 64, dtype=np.float32).reshape(64, 64)
    params = PreprocessParams(ct_window=CtWindow(-500, 1500), ct_clahe=Clahe(2.0, 8))
    shown = preprocess.to_display(hu, "hu", params)
    assert shown.shape == (64, 64) and shown.dtype == np.float32
    assert shown.min() >= 0.0 and shown.max() <= 1.0 and shown.max() > 0.9


def test_params_round_trip_through_a_card_dict():
    params = PreprocessParams(size=(128, 96), ct_clahe=None, denoise_sigma=0.5)
    assert PreprocessParams.from_dict(params.to_dict()) == params
    post = PostprocessParams(threshold=0.4)
    assert PostprocessParams.from_dict(post.to_dict()) == post
    with pytest.raises(ModelLoadError, match="unknown preprocess keys"):
        PreprocessParams.from_dict({"sise": [1, 2]})


def test_fill_holes():
    ring = np.zeros((7, 7), dtype=bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    filled = postprocess.fill_holes(ring)
    assert filled[3, 3] and filled.sum() == 25


def test_largest_components_keeps_two_lungs_and_drops_specks():
    mask = np.zeros((10, 20), dtype=bool)
    mask[1:9, 1:7] = True  # 48 px
    mask[1:9, 12:17] = True  # 40 px
    mask[0, 19] = True  # 1 px speck
    mask[9, 9:11] = True  # 2 px
    kept = morphology.largest_components(mask, keep=2, min_fraction=0.1)
    assert kept.sum() == 88 and not kept[0, 19] and not kept[9, 9]
    assert morphology.largest_components(np.zeros((3, 3), bool), 2, 0.1).sum() == 0


def test_to_masks_upsamples_and_restricts_infection_to_lung():
    probs = np.zeros((2, 4, 4), dtype=np.float32)
    probs[0, :, :2] = 0.9  # lung: left half
    probs[1, :2, :] = 0.8  # infection: top half, half of it outside the lung
    masks = postprocess.to_masks(probs, (8, 8), PostprocessParams())
    assert masks.lung.shape == masks.infection.shape == (8, 8)
    assert masks.lung[:, :3].all() and not masks.lung[:, 5:].any()
    assert not (masks.infection & ~masks.lung).any()
    assert masks.infection[:3, :3].all()


def test_infection_specks_below_a_fraction_of_the_lung_are_dropped():
    probs = np.zeros((2, 10, 10), dtype=np.float32)
    probs[0, :, :] = 0.9  # lung: all 100 px
    probs[1, 0:3, 0:3] = 0.9  # 9 px lesion
    probs[1, 8, 8] = 0.9  # 1 px speck
    kept = postprocess.to_masks(probs, (10, 10), PostprocessParams(min_infection_fraction=0.05))
    assert kept.infection.sum() == 9 and not kept.infection[8, 8]
    everything = postprocess.to_masks(probs, (10, 10), PostprocessParams())
    assert everything.infection.sum() == 10


def test_lung_components_without_air_are_dropped_when_hu_are_known():
    probs = np.zeros((2, 8, 12), dtype=np.float32)
    probs[0, 1:7, 1:5] = 0.9  # a real lung: air
    probs[0, 1:7, 7:11] = 0.9  # "lung" on muscle
    probs[1, 2:4, 2:4] = 0.9
    hu = np.full((8, 12), 40.0, dtype=np.float32)
    hu[:, :6] = -850.0
    params = PostprocessParams(min_lung_air_fraction=0.3)
    masks = postprocess.to_masks(probs, (8, 12), params, hu)
    assert masks.lung[:, :6].sum() == 24 and not masks.lung[:, 6:].any()
    assert masks.infection.sum() == 4
    no_hu = postprocess.to_masks(probs, (8, 12), params)  # 8-bit input: no check possible
    assert no_hu.lung.sum() == 48


def test_infection_percent_and_areas():
    lung = np.zeros((4, 4), dtype=bool)
    lung[:, :2] = True  # 8 px
    infection = np.zeros((4, 4), dtype=bool)
    infection[0, :] = True  # 2 px inside the lung, 2 outside
    stats = measure.infection_stats(lung, infection, spacing_mm=(0.5, 2.0))
    assert (stats.lung_area_px, stats.infection_area_px) == (8, 2)
    assert stats.infection_percent == 25.0
    assert (stats.lung_area_mm2, stats.infection_area_mm2) == (8.0, 2.0)


def test_empty_lung_gives_zero_percent_and_totals_add_up():
    empty = measure.infection_stats(np.zeros((2, 2), bool), np.ones((2, 2), bool))
    assert empty.infection_percent == 0.0 and empty.lung_area_mm2 is None
    a = measure.InfectionStats(10, 5, 50.0, 10.0, 5.0)
    b = measure.InfectionStats(30, 0, 0.0, 30.0, 0.0)
    total = measure.total_stats([a, b])
    assert (total.lung_area_px, total.infection_area_px, total.infection_percent) == (40, 5, 12.5)
    assert total.lung_area_mm2 == 40.0


def test_more_components_than_16_bit_labels_hold_fall_back_to_32_bit():
    mask = np.zeros((1024, 1024), dtype=bool)
    mask[::3, ::3] = True  # 342 x 342 = 116,964 single-pixel components
    count, labels, stats, _ = morphology.components(mask)
    assert (count, labels.dtype) == (342 * 342 + 1, np.int32)
    assert stats[1:, 4].tolist() == [1] * (342 * 342)  # every area is one pixel
    assert not postprocess.drop_small(mask, 2).any()
    assert np.array_equal(postprocess.drop_small(mask, 1), mask)
    kept = morphology.largest_components(mask, 2, 0.0)
    assert np.count_nonzero(kept) == 2


def test_few_components_get_16_bit_labels():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0:2, 0:2] = mask[4:6, 3:6] = True
    count, labels, stats, _ = morphology.components(mask)
    assert (count, labels.dtype) == (3, np.uint16)
    assert stats[1:, 4].tolist() == [4, 6]
