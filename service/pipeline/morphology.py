"""Binary morphology on bool masks: the one implementation the post-processing and the threshold
segmenter share (connected components, hole filling, openings and closings, convex hulls).

Every function takes and returns bool ``(H, W)`` arrays unless it says otherwise.
"""

from __future__ import annotations

import cv2
import numpy as np


def components(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """8-connected components: ``(count, labels, stats, centroids)`` as OpenCV gives them.

    ``count`` includes the background (label 0). Labels are 16-bit when they fit (half the
    memory traffic of 32-bit on a full-size radiograph); OpenCV refuses to overflow them, and
    then 32-bit labels are used. ``centroids`` are ``(x, y)`` per label.
    """
    contiguous_bool = mask.dtype == bool and mask.flags.c_contiguous
    image = mask.view(np.uint8) if contiguous_bool else mask.astype(np.uint8)
    try:
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(
            image, connectivity=8, ltype=cv2.CV_16U
        )
    except cv2.error:  # more than 65,535 components
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(
            image, connectivity=8, ltype=cv2.CV_32S
        )
    return int(count), labels, stats, centroids


def select(labels: np.ndarray, count: int, keep: list[int] | np.ndarray) -> np.ndarray:
    """Pixels whose label is in ``keep`` (a lookup table, not ``np.isin``)."""
    table = np.zeros(count, dtype=bool)
    table[np.asarray(keep, dtype=np.intp)] = True
    table[0] = False
    return table[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a mask (background not connected to the border)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return mask | holes


def largest_components(mask: np.ndarray, keep: int, min_fraction: float) -> np.ndarray:
    """The ``keep`` largest components; those under ``min_fraction`` x the largest are dropped
    too. An empty mask stays empty."""
    count, labels, stats, _ = components(mask)
    if count <= 1:
        return np.zeros_like(mask, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][:keep]
    kept = [i + 1 for i in order if areas[i] >= min_fraction * areas[order[0]]]
    return select(labels, count, kept)


def drop_small(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Remove components with fewer than ``min_area`` pixels (``min_area <= 0``: unchanged)."""
    if min_area <= 0 or not mask.any():
        return mask
    count, labels, stats, _ = components(mask)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return select(labels, count, keep)


def disk(diameter_px: float) -> np.ndarray:
    """Elliptic structuring element (uint8) of about ``diameter_px`` pixels (at least 1)."""
    size = max(1, round(diameter_px))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def scaled(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Disk whose diameter is ``fraction`` of the long side of ``mask``."""
    return disk(fraction * max(mask.shape))


def morph(mask: np.ndarray, op: int, kernel: np.ndarray) -> np.ndarray:
    """OpenCV morphology (``cv2.MORPH_OPEN``, ``MORPH_CLOSE``, ``MORPH_ERODE``, ...), edges
    replicated."""
    out = cv2.morphologyEx(mask.astype(np.uint8), op, kernel, borderType=cv2.BORDER_REPLICATE)
    return out.astype(bool)


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Convex hull of the foreground (empty stays empty)."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    hull = np.zeros(mask.shape, np.uint8)
    if points is not None:
        cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    return hull.astype(bool)


def fill_each(mask: np.ndarray, close_fraction: float) -> np.ndarray:
    """Close and hole-fill each component separately (no bridging between components); the
    closing diameter is ``close_fraction`` of the long side."""
    count, labels, _, _ = components(mask)
    kernel = scaled(mask, close_fraction)
    filled = np.zeros_like(mask, dtype=bool)
    for index in range(1, count):
        filled |= fill_holes(morph(labels == index, cv2.MORPH_CLOSE, kernel))
    return filled
