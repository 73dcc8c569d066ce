"""Classical CT lung and infection segmentation (no model): thresholds, components, morphology.

Two entry points, both working on one axial slice at working resolution and returning bool
``(h, w)`` masks ``(lung, infection)``:

* :func:`segment_hu` for slices in Hounsfield units (CT DICOM): body = HU above
  ``body_hu``; lung = air (HU below ``air_hu``) inside the body's hull; infection = lung pixels
  in the ground-glass / consolidation band ``infection_hu``.
* :func:`segment_display` for already windowed 8-bit slices (PNG/JPEG, values in [0, 1]): the
  same steps with an Otsu threshold in place of ``air_hu`` and a relative threshold between the
  slice's own lung and soft-tissue levels in place of ``infection_hu``.

Shared steps: dark components count as lung when most of their area lies inside the body's
convex hull (the air around the body does not; a lung touching the border of a cropped slice
still does) and they are not much smaller than a lung (2 % of the body: the trachea, bowel gas,
sinuses drop out); the two largest are kept; each lung is closed and hole-filled
so that dense lesions inside or against its wall become part of it (reference lung masks include
them). Vessels are removed from the infection by a morphological opening and a minimum
component area. Sizes are fractions of the slice's long side, so they do not depend on the
working resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.pipeline.morphology import (
    components,
    convex_hull,
    disk,
    fill_each,
    fill_holes,
    largest_components,
    morph,
    scaled,
    select,
)


@dataclass(frozen=True)
class CtThresholds:
    """Thresholds of the CT segmenter; HU bands for DICOM, fractions for windowed slices.

    Attributes:
        body_hu: body = pixels above this HU (soft tissue and bone, not air or lung).
        air_hu: lung = air below this HU inside the body (aerated lung is -950..-700 HU).
        infection_hu: ``(low, high)`` HU band of ground-glass opacity (about -750..-300) and
            consolidation (about -300..+100) inside the lung.
        infection_level: windowed slices: a lung pixel is infection when it is brighter than
            ``lung + infection_level x (soft tissue - lung)``, the slice's own median levels.
        hull_fraction: a dark component is lung only when at least this fraction of it lies
            inside the convex hull of the body.
        min_lung_fraction: dark components smaller than this fraction of the body are not lung
            (bowel gas, the trachea, air in sinuses; also the last few mm of a lung base).
        close_fraction: closing diameter of each lung, as a fraction of the long side.
        vessel_fraction: opening diameter that removes vessels from the infection.
        min_infection_fraction: infection components smaller than this fraction of the lung
            area are dropped.
    """

    body_hu: float = -500.0
    air_hu: float = -400.0
    infection_hu: tuple[float, float] = (-750.0, 100.0)
    infection_level: float = 0.3
    hull_fraction: float = 0.6
    min_lung_fraction: float = 0.02
    close_fraction: float = 0.03
    vessel_fraction: float = 0.012
    min_infection_fraction: float = 0.002


def otsu(values: np.ndarray) -> float:
    """Otsu threshold of [0, 1] values (any shape), computed on their 8-bit quantisation."""
    as_u8 = np.round(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8).reshape(1, -1)
    if as_u8.size == 0 or as_u8.min() == as_u8.max():
        return float(as_u8.max(initial=0)) / 255.0
    level, _ = cv2.threshold(as_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(level) / 255.0


def body_mask(bright: np.ndarray) -> np.ndarray:
    """The body in a bool ``(h, w)`` mask of bright pixels: its largest component, holes filled.

    Only the largest: with smaller pieces (the table, clothing) the air between them and the body
    would look like lung. The cost: where a tight crop cuts the chest wall into pieces, a lung
    outside the largest piece's hull is missed.
    """
    opened = morph(bright, cv2.MORPH_OPEN, scaled(bright, 0.01))
    return fill_holes(largest_components(opened, 1, 0.0))


def inside_components(
    dark: np.ndarray, region: np.ndarray, fraction: float, min_area: float
) -> np.ndarray:
    """Components of ``dark`` of ``min_area`` pixels or more, ``fraction`` of them in ``region``."""
    count, labels, _, _ = components(dark)
    if count <= 1:
        return np.zeros_like(dark, dtype=bool)
    total = np.bincount(labels.ravel(), minlength=count)
    inside = np.bincount(labels[region].ravel(), minlength=count)
    keep = np.flatnonzero((inside >= fraction * total) & (total >= min_area))
    return select(labels, count, keep)


def pick_lungs(dark: np.ndarray, body: np.ndarray, t: CtThresholds) -> np.ndarray:
    """Dark pixels -> the (at most two) lungs, closed and filled; bool ``(h, w)``."""
    min_area = t.min_lung_fraction * np.count_nonzero(body)
    candidates = inside_components(dark, convex_hull(body), t.hull_fraction, min_area)
    return fill_each(largest_components(candidates, 2, 0.1), t.close_fraction)


def clean_infection(candidates: np.ndarray, lung: np.ndarray, t: CtThresholds) -> np.ndarray:
    """Remove vessels and specks: opening, then components below the minimum area."""
    opened = morph(candidates, cv2.MORPH_OPEN, scaled(candidates, t.vessel_fraction))
    count, labels, stats, _ = components(opened)
    min_area = t.min_infection_fraction * np.count_nonzero(lung)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return select(labels, count, keep) & lung


def segment_hu(hu: np.ndarray, t: CtThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Segment one CT slice in Hounsfield units.

    Args:
        hu: float ``(h, w)`` slice in HU.
        t: thresholds.

    Returns:
        bool ``(h, w)`` masks ``(lung, infection)``.
    """
    body = body_mask(hu > t.body_hu)
    lung = pick_lungs(hu < t.air_hu, body, t)
    inner = morph(lung, cv2.MORPH_ERODE, disk(3))  # partial volume with the chest wall
    low, high = t.infection_hu
    infection = clean_infection(inner & (hu >= low) & (hu <= high), lung, t)
    return lung, infection


def segment_display(image: np.ndarray, t: CtThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Segment one windowed CT slice (display values, 1 = bright).

    Args:
        image: float ``(h, w)`` in [0, 1].
        t: thresholds (``infection_level`` and the shape parameters; the HU bands are unused).

    Returns:
        bool ``(h, w)`` masks ``(lung, infection)``.
    """
    smooth = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 1.0)
    level = otsu(smooth)
    body = body_mask(smooth > level)
    lung = pick_lungs(smooth <= level, body, t)
    tissue = body & ~lung
    if not lung.any() or not tissue.any():
        return lung, np.zeros_like(lung)
    air_level = float(np.median(smooth[lung & (smooth <= level)]))
    tissue_level = float(np.median(smooth[tissue]))
    cut = air_level + t.infection_level * (tissue_level - air_level)
    inner = morph(lung, cv2.MORPH_ERODE, disk(3))
    return lung, clean_infection(inner & (smooth > cut), lung, t)
