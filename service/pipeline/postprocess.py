"""Postprocessing: model probabilities become lung and infection masks in the input's size."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.pipeline.params import PostprocessParams


@dataclass(frozen=True)
class Masks:
    """Final masks of one frame, bool ``(H, W)`` each, in the input's size and pixel order."""

    lung: np.ndarray
    infection: np.ndarray


def upsample(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize probabilities ``(C, h, w)`` to ``(C, *size)`` bilinearly (``size = (H, W)``)."""
    height, width = size
    if probabilities.shape[1:] == (height, width):
        return probabilities.astype(np.float32, copy=False)
    return np.stack(
        [
            cv2.resize(p.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            for p in probabilities
        ]
    )


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool ``(H, W)`` mask (background not connected to the border)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """8-connected components of a bool mask: ``(count, labels, stats)`` as OpenCV gives them.

    Labels are 16-bit when they fit (half the memory traffic of 32-bit on a full-size
    radiograph); OpenCV refuses to overflow them, and then 32-bit labels are used.
    """
    contiguous_bool = mask.dtype == bool and mask.flags.c_contiguous
    image = mask.view(np.uint8) if contiguous_bool else mask.astype(np.uint8)
    try:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            image, connectivity=8, ltype=cv2.CV_16U
        )
    except cv2.error:  # more than 65,535 components
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            image, connectivity=8, ltype=cv2.CV_32S
        )
    return count, labels, stats


def _select(labels: np.ndarray, count: int, keep: list[int]) -> np.ndarray:
    """Bool mask of the pixels whose label is in ``keep`` (a lookup table, not ``np.isin``)."""
    table = np.zeros(count, dtype=bool)
    table[keep] = True
    return table[labels]


def largest_components(mask: np.ndarray, keep: int, min_fraction: float) -> np.ndarray:
    """Keep the ``keep`` largest 8-connected components of a bool mask.

    Components smaller than ``min_fraction`` x the largest are dropped too. An empty mask stays
    empty.
    """
    count, labels, stats = components(mask)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:keep]
    kept = [i + 1 for i in order if areas[i] >= min_fraction * areas[order[0]]]
    return _select(labels, count, kept)


def drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Remove 8-connected components of a bool mask with fewer than ``min_area`` pixels."""
    if min_area <= 0 or not mask.any():
        return mask
    count, labels, stats = components(mask)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return _select(labels, count, keep)


def airless_removed(
    mask: np.ndarray, hu: np.ndarray, air_hu: float, min_fraction: float
) -> np.ndarray:
    """Drop components of a bool mask whose pixels are air (``hu < air_hu``) less than
    ``min_fraction`` of the time; ``hu`` is the float ``(H, W)`` frame in Hounsfield units."""
    count, labels, _ = components(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count)
    air = np.bincount(labels.ravel(), weights=(hu < air_hu).ravel(), minlength=count)
    keep = [i for i in range(1, count) if air[i] >= min_fraction * sizes[i]]
    return _select(labels, count, keep)


def clean_lung(
    mask: np.ndarray, params: PostprocessParams, hu: np.ndarray | None = None
) -> np.ndarray:
    """Anatomical cleanup of a bool lung mask: components without air (when HU are known),
    the largest components, then hole filling."""
    if hu is not None and params.min_lung_air_fraction > 0:
        mask = airless_removed(mask, hu, params.lung_air_hu, params.min_lung_air_fraction)
    cleaned = largest_components(mask, params.lung_components, params.min_component_fraction)
    if params.fill_holes:
        cleaned = fill_holes(cleaned)
    return cleaned


def to_masks(
    probabilities: np.ndarray,
    size: tuple[int, int],
    params: PostprocessParams,
    hu: np.ndarray | None = None,
) -> Masks:
    """Turn model probabilities into final masks.

    Args:
        probabilities: float ``(2, h, w)`` in [0, 1]; channel 0 lung, channel 1 infection.
        size: the input image's ``(height, width)``; masks come back in exactly that size.
        params: the model card's postprocessing parameters.
        hu: the frame in Hounsfield units, float ``size``, when known (CT DICOM): enables the
            lung-holds-air check of ``params.min_lung_air_fraction``.

    Returns:
        :class:`Masks` with bool ``(height, width)`` arrays.
    """
    full = upsample(probabilities, size)
    lung = clean_lung(full[0] >= params.threshold, params, hu)
    infection = full[1] >= params.threshold
    if params.infection_in_lung:
        infection &= lung
    infection = drop_small(infection, params.min_infection_fraction * np.count_nonzero(lung))
    return Masks(lung=lung, infection=infection)
