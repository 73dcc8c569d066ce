"""Image-level decisions on arrays made in the test."""

from __future__ import annotations

import numpy as np
import pytest

from service.pipeline.decide import decide_frame, input_warning, inside_body
from service.pipeline.params import DecisionParams
from service.pipeline.postprocess import Masks

RULES = DecisionParams(threshold=0.4, min_lung_fraction=0.05, min_lung_confidence=0.85)


def chest(n: int = 64) -> tuple[Masks, np.ndarray, np.ndarray]:
    """Two lung fields covering a quarter of a frame with contrast, sure probabilities."""
    lung = np.zeros((n, n), bool)
    lung[16:48, 8:24] = lung[16:48, 40:56] = True
    infection = np.zeros((n, n), bool)
    infection[20:30, 10:20] = True
    frame = np.where(lung, 0.2, 0.8).astype(np.float32)
    probs = np.stack([lung * 0.98, infection * 0.9]).astype(np.float32)
    return Masks(lung, infection), frame, probs


def test_a_chest_with_a_confident_head_score_has_lungs_and_infection():
    masks, frame, probs = chest()
    decision = decide_frame(masks, frame, "display", RULES, probs, 0.5, score=0.7)
    assert (decision.lung_found, decision.infection_detected) == (True, True)
    assert decision.infection_score == 0.7 and decision.warnings == ()


def test_the_head_below_its_operating_point_means_no_infection():
    masks, frame, probs = chest()
    decision = decide_frame(masks, frame, "display", RULES, probs, 0.5, score=0.39)
    assert decision.lung_found and not decision.infection_detected


def test_without_a_head_the_score_is_the_infected_fraction():
    masks, frame, probs = chest()
    no_head = DecisionParams(None, 0.05, 0.85)
    decision = decide_frame(masks, frame, "display", no_head, probs, 0.5, score=None)
    assert decision.infection_detected
    assert decision.infection_score == pytest.approx(100 / 1024)


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (np.full((1, 1), 0.5, np.float32), "1x1 pixels: too small"),
        (np.full((20, 400), 0.5, np.float32), "400x20 pixels"),
        (np.full((256, 256), 0.5, np.float32), "blank"),
    ],
)
def test_tiny_or_blank_inputs_have_no_lung(frame, fragment):
    assert fragment in (input_warning(frame, "display") or "")


def test_an_unsure_or_small_lung_is_no_lung():
    masks, frame, probs = chest()
    unsure = probs.copy()
    unsure[0][masks.lung] = 0.6
    decision = decide_frame(masks, frame, "display", RULES, unsure, 0.5, score=0.9)
    assert not decision.lung_found and not decision.infection_detected
    assert "unsure" in decision.warnings[0]
    speck = Masks(np.zeros_like(masks.lung), masks.infection)
    speck.lung[0:2, 0:2] = True
    small = decide_frame(speck, frame, "display", RULES, probs, 0.5, score=0.9)
    assert not small.lung_found and "less than the 5 %" in small.warnings[0]


def test_air_outside_the_body_is_not_lung():
    hu = np.full((64, 64), -1000.0, np.float32)
    hu[10:54, 10:54] = 40.0  # a head
    inside = np.zeros((64, 64), bool)
    inside[20:40, 20:40] = True
    hu[inside] = -850.0  # air inside the body: lung-like
    outside = np.zeros((64, 64), bool)
    outside[0:8, :] = True  # air above the head
    assert inside_body(inside, hu) == 1.0 and inside_body(outside, hu) == 0.0
    probs = np.stack([outside * 0.99, np.zeros((64, 64))]).astype(np.float32)
    rules = DecisionParams(None, 0.01, 0.85)
    decision = decide_frame(Masks(outside, outside & False), hu, "hu", rules, probs, 0.5, None)
    assert not decision.lung_found and "outside the body" in decision.warnings[0]


def test_a_lung_smaller_than_the_card_area_is_no_lung_where_the_spacing_is_known():
    masks, frame, probs = chest()  # 1024 lung pixels
    rules = DecisionParams(0.4, 0.05, 0.85, min_lung_area_mm2=500.0)
    sinus = decide_frame(masks, frame, "display", rules, probs, 0.5, 0.9, lung_area_mm2=256.0)
    assert not sinus.lung_found and not sinus.infection_detected
    assert sinus.warnings == (
        "no lung found: the lung would be 2.6 cm², less than the 5 cm² of a slice through "
        "the lungs",
    )
    assert decide_frame(
        masks, frame, "display", rules, probs, 0.5, 0.9, lung_area_mm2=512.0
    ).lung_found
    assert decide_frame(
        masks, frame, "display", rules, probs, 0.5, 0.9, lung_area_mm2=None
    ).lung_found
