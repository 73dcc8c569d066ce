"""Measures of a segmented CT volume: volumes in mL, left and right lung, per-slice areas.

* One voxel's volume is ``|det|`` of the 3x3 part of the voxel -> patient affine (mm³; a
  tilted or oblique grid included), / 1000 for mL; a pixel's area is the norm of the cross
  product of the row and column steps.
* Left and right come from the patient coordinate system (LPS: +x is the patient's left), never
  from image columns. The lung mask is split into its 6-connected 3-D components. The gap
  between the lungs is the sagittal plane (a canonical column) where the fewest lung voxels lie,
  searched within ``MIDLINE_SEARCH`` of the columns around the body's centre (the mean column
  of the voxels above ``BODY_HU`` on the slices with lung; the lung's own centre without HU).
  Then, with the two largest components:

  - each lying (``SIDE_FRACTION``) on its own side of that plane: ``"components"``, each named
    by the patient x of its centroid (the larger x is the left lung; further small components
    by the side of the plane their centroid lies on);
  - one component on one side only: ``"one_lung"``, named by that side, with a warning;
  - otherwise (the lungs joined in 3-D, common at the anterior junction, or through the
    trachea): ``"midline"``, every lung voxel named by its side of the plane, with a warning.

* ``lung_found``: at least ``LUNG_FOUND_ML``; below it the label map is emptied, every volume
  is 0 and ``infection_percent`` None (not a chest CT, or one without lung: a head, an
  abdomen); ``infection_detected``: infection of at least
  ``INFECTION_MIN_PERCENT`` of the lung volume and at least ``INFECTION_MIN_ML`` (both: a few
  stray voxels of a small lung are not a finding, nor is a speck in a large one). Chosen a
  priori; the model's decision head will replace it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from service.imaging.volume import InputLayout, Volume
from service.pipeline.measure import percent
from service.pipeline.result import ModelInfo
from service.pipeline.run import Backend
from service.pipeline.volume import (
    INFECTION,
    LUNG,
    LungMeasures,
    Lungs,
    SliceMeasures,
    VolumeSegmentation,
    postprocess_volume,
)
from service.pipeline.volume_components import Histograms, label_3d, slice_ids

LUNG_FOUND_ML = 100.0
INFECTION_MIN_PERCENT = 0.5
INFECTION_MIN_ML = 1.0
SIDE_FRACTION = 0.9
MIDLINE_SEARCH = 0.1
BODY_HU = -500.0
EDGE_FRACTION = 0.05
"""A lung reaching the first or last slice with more than this fraction of its largest slice
area is reported as possibly cut off by the scanned range."""


def voxel_ml(affine: np.ndarray) -> float:
    """One voxel's volume in mL: |det| of the affine's 3x3 part (mm³) / 1000."""
    return float(abs(np.linalg.det(np.asarray(affine, np.float64)[:3, :3]))) / 1000.0


def pixel_mm2(affine: np.ndarray) -> float:
    """One in-slice pixel's area in mm² (row step x column step)."""
    linear = np.asarray(affine, np.float64)[:3, :3]
    return float(np.linalg.norm(np.cross(linear[:, 1], linear[:, 2])))


def lung_measures(
    lung_voxels: int, infection_voxels: int, ml: float, found: bool = True
) -> LungMeasures:
    """Volumes in mL of ``*_voxels`` voxels of ``ml`` mL; no percentage without a lung."""
    return LungMeasures(
        volume_ml=lung_voxels * ml,
        infection_volume_ml=infection_voxels * ml,
        infection_percent=percent(infection_voxels, lung_voxels) if found else None,
    )


def body_centre(voxels: np.ndarray | None, slices: list[int], lung_centre: float) -> float:
    """Mean column of the body (voxels above ``BODY_HU``) on up to 16 of ``slices``."""
    if voxels is None or not slices:
        return lung_centre
    picked = slices[:: max(1, len(slices) // 16)]
    columns = np.zeros(voxels.shape[2])
    for index in picked:
        columns += np.count_nonzero(voxels[index] > BODY_HU, axis=0)
    total = columns.sum()
    return float(columns @ np.arange(len(columns)) / total) if total else lung_centre


def gap_column(profile: np.ndarray, centre: float) -> int:
    """The column with the fewest lung voxels (box-smoothed over 5) near ``centre``."""
    smooth = np.convolve(profile, np.ones(5), mode="same")
    half = max(2, round(MIDLINE_SEARCH * len(profile)))
    low = int(np.clip(round(centre) - half, 0, len(profile) - 1))
    high = int(np.clip(round(centre) + half + 1, low + 1, len(profile)))
    return low + int(np.argmin(smooth[low:high]))


def side_histograms(labels: np.ndarray) -> Histograms:
    """:class:`Histograms` of the lung of a label map (its 6-connected components found here;
    :func:`~service.pipeline.volume.postprocess_volume` returns them without this pass)."""
    found = label_3d(labels, LUNG)
    histograms = Histograms.empty(found.count, found.box)
    for index in range(labels.shape[0]):
        if len(found.ids[index]) > 1:
            plane = labels[index]
            ids = slice_ids(found, plane >= LUNG, index)
            present = np.unique(found.ids[index][1:])
            histograms.add(index, ids, ids > 0, plane[found.box] == INFECTION, present)
    return histograms


def split_sides(
    histograms: Histograms,
    voxels: np.ndarray | None,
    affine: np.ndarray,
    profile: np.ndarray,
    lung_slices: list[int],
) -> tuple[tuple[int, int], tuple[int, int], str]:
    """``((left lung, left infection), (right lung, right infection), split)`` in voxels (see
    the module rules); ``profile``: lung voxels per column of the whole slice; ``lung_slices``:
    the slices with lung."""
    columns = np.flatnonzero(profile)
    if len(columns) == 0:
        return (0, 0), (0, 0), "none"
    rows, cols = histograms.box
    sizes = histograms.lung_columns.sum(axis=1)
    centre = body_centre(voxels, lung_slices, (columns[0] + columns[-1]) / 2)
    split = int(np.clip(gap_column(profile, centre) - cols.start, 0, cols.stop - cols.start))
    high = histograms.lung_columns[:, split:].sum(axis=1)
    high_infection = histograms.infection_columns[:, split:].sum(axis=1)
    infection = histograms.infection_columns.sum(axis=1)
    high_is_left = bool(affine[0, 2] > 0)  # the column axis runs towards +x (patient left)
    share_high = high / np.maximum(sizes, 1)
    main = np.argsort(sizes[1:], kind="stable")[::-1][:2] + 1
    main = main[sizes[main] > 0]
    apart = bool(
        np.all((share_high[main] >= SIDE_FRACTION) | (share_high[main] <= 1 - SIDE_FRACTION))
    )
    is_left = (share_high >= 0.5) == high_is_left  # each component by its side of the plane
    sides = set(is_left[main].tolist())
    if apart and len(main) == 2 and len(sides) == 2:
        size = np.maximum(sizes[main], 1)
        centroids = np.stack(
            [
                histograms.slice_sums[main] / size,
                histograms.lung_rows[main] @ np.arange(rows.start, rows.stop) / size,
                histograms.lung_columns[main] @ np.arange(cols.start, cols.stop) / size,
            ],
            axis=1,
        )
        x = [float((affine @ np.array([*c, 1.0]))[0]) for c in centroids]
        is_left[main] = main == main[int(np.argmax(x))]
        split_name = "components"
    elif apart and len(sides) == 1:
        split_name = "one_lung"
    else:
        is_left[:] = False
        split_name = "midline"
    # voxels of no component (filled holes) and, cut at the plane, every voxel ("midline")
    plane_left = np.zeros(len(sizes), bool)
    plane_left[0] = True
    if split_name == "midline":
        plane_left[:] = True
    named = ~plane_left
    low, low_infection = sizes - high, infection - high_infection
    left_lung = int(sizes[named & is_left].sum())
    left_infection = int(infection[named & is_left].sum())
    right_lung = int(sizes[named & ~is_left].sum())
    right_infection = int(infection[named & ~is_left].sum())
    by_plane = (
        (int(high[plane_left].sum()), int(high_infection[plane_left].sum())),
        (int(low[plane_left].sum()), int(low_infection[plane_left].sum())),
    )
    left_extra, right_extra = by_plane if high_is_left else by_plane[::-1]
    left = (left_lung + left_extra[0], left_infection + left_extra[1])
    right = (right_lung + right_extra[0], right_infection + right_extra[1])
    return left, right, split_name


def slice_measures(
    labels: np.ndarray, affine: np.ndarray, layout: InputLayout, scores: list[float | None]
) -> list[SliceMeasures]:
    """One :class:`SliceMeasures` per canonical slice."""
    n, rows, columns = labels.shape
    area = pixel_mm2(affine)
    flipped = bool(layout.to_input[0, 1] < 0)
    out = []
    for index in range(n):
        plane = labels[index]
        lung_px = int(np.count_nonzero(plane))  # every label but 0 is lung
        infection_px = int(np.count_nonzero(plane == INFECTION)) if lung_px else 0
        input_index = n - 1 - index if flipped else index
        centre = affine @ np.array([index, (rows - 1) / 2, (columns - 1) / 2, 1.0])
        out.append(
            SliceMeasures(
                index=index,
                input_index=input_index,
                upload_index=layout.file_index[input_index] if layout.file_index else None,
                z_mm=float(centre[2]),
                lung_area_px=lung_px,
                infection_area_px=infection_px,
                lung_area_mm2=lung_px * area,
                infection_area_mm2=infection_px * area,
                score=scores[index],
            )
        )
    return out


def column_profile(histograms: Histograms, columns: int) -> np.ndarray:
    """Lung voxels per column of the whole slice width."""
    profile = np.zeros(columns, np.int64)
    profile[histograms.box[1]] = histograms.lung_columns.sum(axis=0)
    return profile


def _warnings(lung_ml: float, split: str, left_ml: float, slices: list[SliceMeasures]) -> list[str]:
    notes = []
    if lung_ml < LUNG_FOUND_ML:
        notes.append(
            f"no lung of a plausible size was found ({lung_ml:.0f} mL, at least "
            f"{LUNG_FOUND_ML:.0f} mL expected): check that the volume is a chest CT in "
            "Hounsfield units"
        )
    elif split == "one_lung":
        side, other = ("left", "right") if left_ml > 0 else ("right", "left")
        notes.append(f"only one lung was found (the {side}); the {other} lung's volume is 0")
    elif split == "midline":
        notes.append(
            "the lungs are joined in 3-D: left and right were cut at the sagittal plane "
            "through the gap between them"
        )
    largest = max((s.lung_area_px for s in slices), default=0)
    ends = [("first (lowest)", slices[0]), ("last (highest)", slices[-1])] if slices else []
    for name, end in ends:
        if largest and end.lung_area_px > EDGE_FRACTION * largest:
            notes.append(
                f"the lung reaches the {name} slice: it may extend beyond the scanned range, "
                "and its volume would then be underestimated"
            )
    return notes


def finish_volume(
    volume: Volume,
    labels: np.ndarray,
    scores: list[float | None],
    backend: Backend[Any],
    fallback: str | None,
) -> VolumeSegmentation:
    """The 3-D step (:func:`postprocess_volume` with the backend's card) on the label map of
    :func:`~service.pipeline.volume.segment_slices`, then :func:`volume_result`."""
    histograms = postprocess_volume(labels, backend.postprocess)
    info, provider, precision = backend.info, backend.provider, backend.precision
    return volume_result(volume, labels, scores, info, provider, precision, fallback, histograms)


def volume_result(
    volume: Volume,
    labels: np.ndarray,
    scores: list[float | None],
    model: ModelInfo,
    provider: str,
    precision: str,
    fallback: str | None,
    histograms: Histograms | None = None,
) -> VolumeSegmentation:
    """Measure the post-processed ``labels`` of ``volume`` and gather the result
    (``histograms``: those :func:`postprocess_volume` returned, else found here)."""
    ml = voxel_ml(volume.affine)
    lung_ml = float(np.count_nonzero(labels)) * ml
    found = lung_ml >= LUNG_FOUND_ML
    if not found and lung_ml > 0:  # specks of "lung" in a head or an abdomen: not a finding
        labels[...] = 0
        histograms = None
    slices = slice_measures(labels, volume.affine, volume.to_input, scores)
    histograms = side_histograms(labels) if histograms is None else histograms
    profile = column_profile(histograms, labels.shape[2])
    lung_slices = [s.index for s in slices if s.lung_area_px]
    left, right, split = split_sides(histograms, volume.voxels, volume.affine, profile, lung_slices)
    lung_voxels = sum(s.lung_area_px for s in slices)
    infection_voxels = sum(s.infection_area_px for s in slices)
    total = lung_measures(lung_voxels, infection_voxels, ml, found)
    notes = _warnings(lung_ml, split, left[0] * ml, slices)
    return VolumeSegmentation(
        labels=labels,
        affine=volume.affine,
        layout=volume.to_input,
        n_slices=volume.shape[0],
        spacing_mm=volume.spacing_mm,
        voxel_ml=ml,
        lung_volume_ml=total.volume_ml,
        infection_volume_ml=total.infection_volume_ml,
        infection_percent=total.infection_percent,
        lungs=Lungs(lung_measures(*left, ml, found), lung_measures(*right, ml, found), split),
        slices=slices,
        lung_found=found,
        infection_detected=total.infection_percent is not None
        and total.infection_percent >= INFECTION_MIN_PERCENT
        and total.infection_volume_ml >= INFECTION_MIN_ML,
        warnings=(*volume.warnings, *notes),
        model=model,
        provider=provider,
        precision=precision,
        fallback=fallback,
        source_format=volume.source_format,
        input_slice_axis=int(volume.to_input.to_input[0, 0]),
        source=volume.source,
    )
