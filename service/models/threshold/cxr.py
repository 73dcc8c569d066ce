"""Classical chest X-ray lung and infection segmentation (no model).

Works on one frame of display values (float ``(h, w)`` in [0, 1], 1 = bright) at working
resolution and returns bool ``(h, w)`` masks ``(lung, infection)``:

1. Contrast: percentile stretch and CLAHE, then a Gaussian blur (noise, rib texture).
2. Lungs: pixels darker than the Otsu threshold of the central part of the image, opened to cut
   thin bridges (the axillae) to the air around the body; components touching the image border
   are the air around the body, not lung. Of the rest, those whose centre lies in the central
   band of the image and above its bottom are candidates; the largest on each side of the
   midline is kept. Each lung is closed and hole-filled, which brings opacities inside it back.
3. Infection (a weak baseline): lung pixels brighter than expected after background flattening,
   i.e. whose intensity exceeds a smooth lung background (a large blur of the lung's own values)
   by more than ``opacity_z`` robust standard deviations of the lung's flattened values, opened
   and with small components removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from service.models.threshold.ct import otsu
from service.pipeline.morphology import components, fill_each, morph, scaled, select


@dataclass(frozen=True)
class CxrThresholds:
    """Parameters of the CXR segmenter; sizes are fractions of the image's long side.

    Attributes:
        open_fraction: opening diameter that separates lungs from the air around the body.
        close_fraction: closing diameter of each lung.
        centre_band: lung centres must lie within this fraction of the width around the midline
            (0.8 = between 10 % and 90 % of the width) ...
        max_centre_row: ... and above this fraction of the height.
        min_lung_fraction: lung components smaller than this fraction of the image are dropped.
        max_lung_fraction: a single dark component larger than this fraction of the image is
            background, not lung.
        infection_level: opacity = local mean more than this fraction of the way from the
            aerated-lung level to the soft-tissue level.
        blur_fraction: sigma of the local mean, as a fraction of the long side.
        min_infection_fraction: infection components smaller than this fraction of the lung area
            are dropped.
    """

    open_fraction: float = 0.03
    close_fraction: float = 0.1
    centre_band: float = 0.8
    min_offset: float = 0.05
    max_border_fraction: float = 0.03
    levels: tuple[float, float] = (0.5, 1.4)
    n_levels: int = 15
    max_centre_row: float = 0.85
    min_lung_fraction: float = 0.02
    max_lung_fraction: float = 0.35
    infection_level: float = 0.7
    blur_fraction: float = 0.012
    min_infection_fraction: float = 0.02


def stretch(image: np.ndarray) -> np.ndarray:
    """Percentile stretch: 1st percentile -> 0, 99th -> 1; float32 ``(h, w)``."""
    low, high = np.percentile(image, (1.0, 99.0))
    return np.clip((image - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)


def enhance(stretched: np.ndarray) -> np.ndarray:
    """CLAHE and a light blur of a stretched image; float32 ``(h, w)`` in [0, 1]."""
    as_u8 = np.round(stretched * 255.0).astype(np.uint8)
    equalised = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(as_u8)
    sigma = 0.005 * max(stretched.shape)
    return cv2.GaussianBlur(equalised.astype(np.float32) / 255.0, (0, 0), sigma)


def central(image: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """The image without a ``margin`` fraction on each side (where collimation and air lie)."""
    height, width = image.shape
    dy, dx = int(margin * height), int(margin * width)
    return image[dy : height - dy, dx : width - dx]


def border_fraction(component: np.ndarray, margin: float = 0.03) -> float:
    """Fraction of a bool component's pixels within ``margin`` of the image border."""
    height, width = component.shape
    dy, dx = max(1, int(margin * height)), max(1, int(margin * width))
    inner = int(np.count_nonzero(component[dy : height - dy, dx : width - dx]))
    total = int(np.count_nonzero(component))
    return 1.0 - inner / max(total, 1)


def lung_candidates(dark: np.ndarray, t: CxrThresholds) -> list[np.ndarray]:
    """Dark components that may be a lung: off the border, on one side, not too small or large."""
    height, width = dark.shape
    count, labels, stats, centroids = components(dark)
    found = []
    for index in range(1, count):
        cx, cy = centroids[index] / (width, height)
        offset = abs(cx - 0.5)
        placed = t.min_offset <= offset <= t.centre_band / 2 and cy <= t.max_centre_row
        area = stats[index, cv2.CC_STAT_AREA] / dark.size
        if placed and t.min_lung_fraction <= area <= t.max_lung_fraction:
            component = labels == index
            if border_fraction(component) <= t.max_border_fraction:
                found.append(component)
    return found


def pick_sides(candidates: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Largest candidate whose centre is left of the midline, and largest right of it."""
    lungs = np.zeros(shape, bool)
    middle = shape[1] / 2
    for left in (True, False):
        side = [c for c in candidates if (np.nonzero(c)[1].mean() < middle) == left]
        if side:
            lungs |= max(side, key=np.count_nonzero)
    return lungs


def find_lungs(smooth: np.ndarray, t: CxrThresholds) -> np.ndarray:
    """Enhanced image -> bool mask of the aerated lungs (at most two components).

    Thresholds from ``t.levels[0]`` to ``t.levels[1]`` times the Otsu level of the central image
    are tried; at each, the dark components that may be lungs are found. The largest result
    wins: a higher threshold grows the lungs until they merge with the air outside the body, the
    mediastinum or the abdomen, and stop being valid candidates.
    """
    base = otsu(central(smooth))
    kernel = scaled(smooth, t.open_fraction)
    pairs = []
    for factor in np.linspace(t.levels[0], t.levels[1], t.n_levels):
        dark = morph(smooth < factor * base, cv2.MORPH_OPEN, kernel)
        pairs.append(pick_sides(lung_candidates(dark, t), smooth.shape))
    return max(pairs, key=np.count_nonzero)


def find_opacity(
    image: np.ndarray, aerated: np.ndarray, fields: np.ndarray, t: CxrThresholds
) -> np.ndarray:
    """Lung-field pixels much brighter than the aerated lung; bool ``(h, w)``.

    The aerated level is the 10th percentile of ``aerated`` lung pixels, the soft-tissue level
    the median of the central image outside the lung fields (mediastinum, diaphragm, chest
    wall); a pixel whose local mean lies more than ``t.infection_level`` of the way from the
    first to the second is opacity. Both levels come from the percentile-stretched image without
    CLAHE, which would equalise diffuse haze away.
    """
    outside = central(np.where(fields, np.nan, image))
    if not aerated.any() or np.isnan(outside).all():
        return np.zeros_like(fields)
    local = cv2.GaussianBlur(image, (0, 0), t.blur_fraction * max(image.shape))
    air_level = float(np.percentile(local[aerated], 10))
    tissue_level = float(np.nanmedian(outside))
    bright = fields & (local > air_level + t.infection_level * (tissue_level - air_level))
    opened = morph(bright, cv2.MORPH_OPEN, scaled(bright, t.open_fraction))
    count, labels, stats, _ = components(opened)
    min_area = t.min_infection_fraction * np.count_nonzero(fields)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return select(labels, count, keep)


def segment(image: np.ndarray, t: CxrThresholds) -> tuple[np.ndarray, np.ndarray]:
    """Segment one chest X-ray.

    Args:
        image: float ``(h, w)`` display values in [0, 1] (1 = bright).
        t: parameters.

    Returns:
        bool ``(h, w)`` masks ``(lung, infection)``; the lung is the lung fields (each aerated
        lung closed and hole-filled), the infection lies inside them.
    """
    stretched = stretch(image.astype(np.float32))
    aerated = find_lungs(enhance(stretched), t)
    fields = fill_each(aerated, t.close_fraction)
    return fields, find_opacity(stretched, aerated, fields, t)
