"""``service.pipeline.run``: the one request path, on arrays made in the test."""

from __future__ import annotations

import numpy as np
import pytest

from service.imaging.types import DecodedImage
from service.pipeline.params import DecisionParams, PostprocessParams
from service.pipeline.result import ModelInfo, Prediction
from service.pipeline.run import run


class Half:
    """Lung = the left half of each 4x4 working frame, infection = its top-left pixel; the
    score is the frame's mean. Records the size of every batch it is given."""

    info = ModelInfo("half-cxr", "0", "test", "cxr")
    postprocess = PostprocessParams(lung_components=2, min_component_fraction=0.0)
    decision = DecisionParams.a_priori("cxr")
    provider = "test"
    precision = "fp32"

    def __init__(self, masks: bool = False) -> None:
        self.masks = masks
        self.batches: list[int] = []

    def prepare(self, frame: np.ndarray, units: str) -> float:
        return float(frame.mean())

    def infer(self, inputs: list[float]) -> list[Prediction]:
        self.batches.append(len(inputs))
        maps = np.zeros((2, 4, 4), np.float32)
        maps[0, :, :2] = 1.0
        maps[1, 0, 0] = 1.0
        if self.masks:
            return [Prediction(masks=maps.astype(bool), score=x) for x in inputs]
        return [Prediction(probabilities=maps, score=x) for x in inputs]


def image(frames: int, height: int = 8, width: int = 8) -> DecodedImage:
    pixels = np.stack([np.full((height, width), i / 10, np.float32) for i in range(frames)])
    return DecodedImage(pixels, "display", None, "png", spacing_mm=(0.5, 2.0))


def test_masks_come_back_at_the_input_size_with_areas_and_scores():
    (result,) = run(Half(), image(1, 8, 12), decisions=False)
    assert result.masks.lung.shape == (8, 12) and result.masks.lung.dtype == bool
    assert result.masks.lung[:, :6].all() and not result.masks.lung[:, 6:].any()
    assert result.stats.lung_area_px == 48
    assert result.stats.lung_area_mm2 == pytest.approx(48 * 1.0)
    assert 0 < result.stats.infection_area_px < 48
    assert result.score == 0.0
    assert result.probabilities is None


def test_frames_run_in_bounded_chunks_in_order():
    backend = Half()
    results = run(backend, image(5), decisions=False, chunk=2)
    assert backend.batches == [2, 2, 1]
    assert [r.score for r in results] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_chosen_frames_only_and_probabilities_kept_on_request():
    results = run(Half(), image(4), decisions=False, frames=[3, 1], keep_probabilities=True)
    assert [r.score for r in results] == pytest.approx([0.3, 0.1])
    assert all(r.probabilities is not None and r.probabilities.shape == (2, 8, 8) for r in results)


def test_a_backend_that_decides_pixels_gives_the_same_masks():
    from_probs = run(Half(), image(1), decisions=False)[0].masks
    from_masks = run(Half(masks=True), image(1), decisions=False)[0].masks
    assert np.array_equal(from_probs.lung, from_masks.lung)
    assert np.array_equal(from_probs.infection, from_masks.infection)


def test_each_stage_is_run_through_the_callers_stage_runner():
    seen: list[str] = []

    def stage(name, fn):
        seen.append(name)
        return fn()

    run(Half(), image(3), decisions=False, stage=stage, chunk=2)
    assert seen == ["preprocess", "infer", "postprocess"] * 2


def test_a_backend_that_loses_inputs_is_an_error():
    class Lossy(Half):
        def infer(self, inputs):
            return super().infer(inputs)[:-1]

    with pytest.raises(RuntimeError, match="gave 1 predictions for 2 inputs"):
        run(Lossy(), image(2), decisions=False)


def test_a_prediction_holds_probabilities_or_masks():
    with pytest.raises(ValueError, match="either"):
        Prediction()
    with pytest.raises(ValueError, match="either"):
        Prediction(probabilities=np.zeros((2, 1, 1)), masks=np.zeros((2, 1, 1), bool))


def test_decisions_empty_the_masks_of_a_frame_without_a_lung():
    blank = image(1, 64, 64)  # no contrast: no chest image
    (result,) = run(Half(), blank)
    assert result.decision is not None and not result.decision.lung_found
    assert not result.masks.lung.any() and result.stats.infection_percent is None
    assert "blank" in result.decision.warnings[0]
