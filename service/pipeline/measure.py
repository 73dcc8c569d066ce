"""Areas and the infection percentage of lung."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InfectionStats:
    """Areas of one frame (or totals of several).

    ``infection_area_px`` counts infection pixels inside the lung only;
    ``infection_percent`` = infection_area_px / lung_area_px x 100, 0.0 when the lung is empty,
    and ``None`` when no lung was found (the percentage of nothing is not 0). The mm² areas are
    ``None`` when the pixel spacing is unknown.
    """

    lung_area_px: int
    infection_area_px: int
    infection_percent: float | None
    lung_area_mm2: float | None = None
    infection_area_mm2: float | None = None


def percent(part: int, whole: int) -> float:
    """``part / whole x 100``, 0.0 when ``whole`` is 0."""
    return 100.0 * part / whole if whole > 0 else 0.0


def infection_stats(
    lung: np.ndarray, infection: np.ndarray, spacing_mm: tuple[float, float] | None = None
) -> InfectionStats:
    """Measure one frame.

    Args:
        lung, infection: bool ``(H, W)`` masks.
        spacing_mm: ``(row, column)`` pixel spacing in mm, or ``None``.
    """
    lung_px = int(np.count_nonzero(lung))
    infection_px = int(np.count_nonzero(infection & lung))
    pixel_mm2 = spacing_mm[0] * spacing_mm[1] if spacing_mm else None
    return InfectionStats(
        lung_area_px=lung_px,
        infection_area_px=infection_px,
        infection_percent=percent(infection_px, lung_px),
        lung_area_mm2=lung_px * pixel_mm2 if pixel_mm2 else None,
        infection_area_mm2=infection_px * pixel_mm2 if pixel_mm2 else None,
    )


def no_lung(stats: InfectionStats) -> InfectionStats:
    """The measures of a frame where no lung was found: empty, the percentage undefined."""
    known = stats.lung_area_mm2 is not None
    return InfectionStats(0, 0, None, 0.0 if known else None, 0.0 if known else None)


def total_stats(frames: list[InfectionStats]) -> InfectionStats:
    """Sum the areas of several frames (a multi-frame image) and recompute the percentage
    (``None`` when no frame has a lung found)."""
    lung = sum(s.lung_area_px for s in frames)
    infection = sum(s.infection_area_px for s in frames)
    known = all(s.lung_area_mm2 is not None for s in frames) and bool(frames)
    found = any(s.infection_percent is not None for s in frames)
    return InfectionStats(
        lung_area_px=lung,
        infection_area_px=infection,
        infection_percent=percent(infection, lung) if found else None,
        lung_area_mm2=sum(s.lung_area_mm2 or 0.0 for s in frames) if known else None,
        infection_area_mm2=sum(s.infection_area_mm2 or 0.0 for s in frames) if known else None,
    )
