"""Image-level decisions of one frame: is there a lung, is there infection, and why not.

Given a frame's final masks, the model's lung probabilities at its working resolution and
the decision head's score, :func:`decide_frame` answers:

* ``lung_found``: the frame is a chest image of the modality asked. Cheap input checks first
  (a frame smaller than ``MIN_SIDE_PX`` on a side, or one without contrast, holds no chest),
  then model evidence: the lung covers at least ``min_lung_fraction`` of the frame (and at
  least ``min_lung_area_mm2`` where the pixel spacing is known), the model
  is sure of it (mean lung probability inside the mask >= ``min_lung_confidence``; not checked
  for a backend without probabilities), and, where Hounsfield units are known, the lung lies
  inside the body (air around a head or between the patient and the table is not lung).
* ``infection_detected``: with a decision head, its score >= its operating point
  (``threshold``, chosen on held-back training images and recorded in the model card); without
  one, any infection left after the post-processing. ``infection_score`` is the head's score,
  or the infected fraction of the lung for a model without a head.

When no lung is found the masks are emptied and the infection percentage is undefined; when
infection is not detected its mask is emptied and its percentage is 0. ``warnings`` say why in
plain words (never an identifier).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.pipeline.morphology import convex_hull, largest_components
from service.pipeline.params import DecisionParams
from service.pipeline.postprocess import Masks

MIN_SIDE_PX = 32
"""A frame with a side shorter than this holds no chest image (thumbnails, icons, 1x1)."""
MIN_CONTRAST = {"display": 0.02, "hu": 50.0}
"""Spread (1st to 99th percentile) below which a frame is blank, per unit."""
BODY_HU = -500.0
"""Tissue and bone lie above this; the body is their largest component, holes filled."""
SAMPLE_STEP = 8
"""The contrast check reads every 8th row and column (percentiles of a full CR are slow)."""


@dataclass(frozen=True)
class FrameDecision:
    """What one frame shows, in plain terms (see the module docstring)."""

    lung_found: bool
    infection_detected: bool
    infection_score: float
    warnings: tuple[str, ...] = field(default=())


def input_warning(frame: np.ndarray, units: str) -> str | None:
    """Why a frame cannot hold a chest image at all (too small, blank), or None."""
    height, width = frame.shape
    if min(height, width) < MIN_SIDE_PX:
        return f"the image is {width}x{height} pixels: too small to hold a chest image"
    sample = frame[::SAMPLE_STEP, ::SAMPLE_STEP]
    low, high = np.percentile(sample, (1, 99))
    if not high - low >= MIN_CONTRAST.get(units, MIN_CONTRAST["display"]):
        return "the image is blank (no contrast): no lung to find"
    return None


def inside_body(lung: np.ndarray, hu: np.ndarray) -> float:
    """Fraction of the lung pixels inside the body (the convex hull of its largest piece of
    tissue, HU above ``BODY_HU``): about 1 for lungs, also in a crop that cuts the chest wall,
    about 0 for air around a head or under the table."""
    body = convex_hull(largest_components(hu > BODY_HU, 1, 0.0))
    total = int(np.count_nonzero(lung))
    return float(np.count_nonzero(lung & body)) / total if total else 0.0


def lung_confidence(probabilities: np.ndarray | None, threshold: float) -> float | None:
    """Mean lung probability where the model marks lung, at its working resolution (None for
    a backend without probabilities, 0 when it marks nothing)."""
    if probabilities is None:
        return None
    lung = probabilities[0]
    marked = lung >= threshold
    return float(lung[marked].mean()) if marked.any() else 0.0


def decide_frame(
    masks: Masks,
    frame: np.ndarray,
    units: str,
    params: DecisionParams,
    probabilities: np.ndarray | None,
    prob_threshold: float,
    score: float | None,
    lung_area_mm2: float | None = None,
) -> FrameDecision:
    """The decisions of one frame (see the module docstring).

    Args:
        masks: the frame's cleaned masks, bool ``(H, W)``.
        frame: the decoded frame, float ``(H, W)`` in HU or display values.
        units: ``"hu"`` or ``"display"``.
        params: the model's decision parameters (its card's, or the a-priori ones).
        probabilities: float ``(2, h, w)`` at the model's resolution, or None (threshold).
        prob_threshold: the card's pixel threshold (what counts as marked).
        score: the decision head's score, or None.
        lung_area_mm2: the lung mask's area in mm², None where the pixel spacing is unknown.
    """
    lung_px = int(np.count_nonzero(masks.lung))
    infected = int(np.count_nonzero(masks.infection & masks.lung))
    fraction = infected / lung_px if lung_px else 0.0
    infection_score = score if score is not None else fraction
    reason = input_warning(frame, units)
    if reason is None:
        reason = _lung_evidence(
            masks.lung, frame, units, params, probabilities, prob_threshold, lung_area_mm2
        )
    if reason is not None:
        return FrameDecision(False, False, float(infection_score), (reason,))
    if score is not None and params.threshold is not None:
        detected = score >= params.threshold
    else:
        detected = infected > 0
    return FrameDecision(True, bool(detected), float(infection_score))


def _lung_evidence(
    lung: np.ndarray,
    frame: np.ndarray,
    units: str,
    params: DecisionParams,
    probabilities: np.ndarray | None,
    prob_threshold: float,
    lung_area_mm2: float | None,
) -> str | None:
    """Why the model's lung is not a lung, or None."""
    share = float(np.count_nonzero(lung)) / max(lung.size, 1)
    if share < params.min_lung_fraction:
        return (
            f"no lung found: the lung would cover {100 * share:.1f} % of the image, less than "
            f"the {100 * params.min_lung_fraction:g} % of a chest image"
        )
    if lung_area_mm2 is not None and lung_area_mm2 < params.min_lung_area_mm2:
        return (
            f"no lung found: the lung would be {lung_area_mm2 / 100:.1f} cm², less than the "
            f"{params.min_lung_area_mm2 / 100:g} cm² of a slice through the lungs"
        )
    confidence = lung_confidence(probabilities, prob_threshold)
    if confidence is not None and confidence < params.min_lung_confidence:
        return (
            f"no lung found: the model is unsure of the lung it outlines (mean probability "
            f"{confidence:.2f} < {params.min_lung_confidence:g}); is this a chest image?"
        )
    if units == "hu" and inside_body(lung, frame) < params.min_lung_inside_body:
        return "no lung found: the air the model outlines lies outside the body"
    return None


def image_decision(decisions: list[FrameDecision | None]) -> FrameDecision:
    """The decision of a whole image from its frames': a lung (infection) when any frame has
    one; the highest score among frames with a lung (else among all); every frame's warnings,
    numbered when there are several frames."""
    known = [d for d in decisions if d is not None]
    if not known:
        return FrameDecision(True, False, 0.0)
    with_lung = [d for d in known if d.lung_found] or known
    warnings: list[str] = []
    for index, decision in enumerate(known):
        for text in decision.warnings:
            warnings.append(text if len(known) == 1 else f"frame {index}: {text}")
    return FrameDecision(
        lung_found=any(d.lung_found for d in known),
        infection_detected=any(d.infection_detected for d in known),
        infection_score=max(d.infection_score for d in with_lung),
        warnings=tuple(dict.fromkeys(warnings)),
    )
