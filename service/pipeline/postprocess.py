"""Postprocessing: a backend's output becomes lung and infection masks in the input's size."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.pipeline.morphology import components, drop_small, fill_holes, largest_components
from service.pipeline.morphology import select as select_labels
from service.pipeline.params import PostprocessParams


@dataclass(frozen=True)
class Masks:
    """Final masks of one frame, bool ``(H, W)`` each, in the input's size and pixel order."""

    lung: np.ndarray
    infection: np.ndarray


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize float maps ``(C, h, w)`` to float32 ``(C, *size)`` bilinearly (``size = (H, W)``)."""
    height, width = size
    if maps.shape[1:] == (height, width):
        return maps.astype(np.float32, copy=False)
    return np.stack(
        [
            cv2.resize(p.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
            for p in maps
        ]
    )


def airless_removed(
    mask: np.ndarray, hu: np.ndarray, air_hu: float, min_fraction: float
) -> np.ndarray:
    """Drop components of a bool mask whose pixels are air (``hu < air_hu``) less than
    ``min_fraction`` of the time; ``hu`` is the float ``(H, W)`` frame in Hounsfield units."""
    count, labels, _, _ = components(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=count)
    air = np.bincount(labels.ravel(), weights=(hu < air_hu).ravel(), minlength=count)
    keep = [i for i in range(1, count) if air[i] >= min_fraction * sizes[i]]
    return select_labels(labels, count, keep)


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


def decide(
    full: np.ndarray, threshold: float, params: PostprocessParams, hu: np.ndarray | None = None
) -> Masks:
    """Masks from maps already at the input's size.

    Args:
        full: float ``(2, H, W)``: lung and infection probabilities (or 0/1 decisions).
        threshold: value at or above which a pixel is foreground.
        params: the cleanup rules (lung components, holes, infection inside the lung, specks).
        hu: the frame in Hounsfield units, when known (CT DICOM): enables the lung-holds-air
            check of ``params.min_lung_air_fraction``.
    """
    lung = clean_lung(full[0] >= threshold, params, hu)
    infection = full[1] >= threshold
    if params.infection_in_lung:
        infection &= lung
    infection = drop_small(infection, params.min_infection_fraction * np.count_nonzero(lung))
    return Masks(lung=lung, infection=infection)


def to_masks(
    probabilities: np.ndarray,
    size: tuple[int, int],
    params: PostprocessParams,
    hu: np.ndarray | None = None,
) -> Masks:
    """Model probabilities ``(2, h, w)`` (lung, infection) -> :class:`Masks` of ``size``
    (bilinear upsampling, then :func:`decide` at ``params.threshold``)."""
    return decide(upsample(probabilities, size), params.threshold, params, hu)


def masks_to_masks(
    decisions: np.ndarray,
    size: tuple[int, int],
    params: PostprocessParams,
    hu: np.ndarray | None = None,
) -> Masks:
    """Bool masks ``(2, h, w)`` of a backend that decides pixels itself (the threshold
    segmenter) -> :class:`Masks` of ``size``: the 0/1 maps are upsampled bilinearly and cut at
    one half (a smooth outline, not nearest-neighbour blocks), then cleaned as model masks are."""
    return decide(upsample(decisions.astype(np.float32), size), 0.5, params, hu)
