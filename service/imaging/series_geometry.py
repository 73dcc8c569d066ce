"""Geometry of a DICOM series from its headers: the planes (instances or frames), their order
along the slice normal, duplicates, gaps, gantry tilt, and the affine of the stacked array.

Rules (``SeriesError`` with what was wrong, before any pixel is decoded):

* every plane has the same Rows x Columns, ImageOrientationPatient (within 1e-3) and
  PixelSpacing (within 1e-3 mm);
* planes are ordered by ImagePositionPatient projected on the slice normal (the cross product
  of the orientation's row and column vectors), ascending; never by file name or InstanceNumber;
* planes less than 0.01 mm apart along the normal are duplicates (grouped; the caller compares
  their pixels);
* a gap larger than 1.5x the median gap (a missing slice), or smaller than 0.5x (mixed
  reconstructions), is refused: the volume's size in mL and its affine would be wrong. Gaps
  within those bounds that still differ by more than 1 % are accepted with a warning
  ("irregular spacing"); the affine then uses the mean spacing;
* slice positions more than 1 degree off the normal (gantry tilt) are refused; a smaller tilt
  is kept in the affine (its slice axis follows the positions) with a warning.

Positions and directions are DICOM patient coordinates (LPS), in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from service.errors import SeriesError, UnsupportedMediaError
from service.imaging.dicom_attrs import attr
from service.imaging.raster import check_pixel_limit

DUPLICATE_TOLERANCE_MM = 0.01
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE_MM = 1e-3
MAX_GAP_RATIO = 1.5
MIN_GAP_RATIO = 0.5
IRREGULAR_GAP_FRACTION = 0.01
MAX_TILT_DEG = 1.0
TILT_WARNING_DEG = 0.01
AXIAL_ORIENTATION = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


@dataclass(frozen=True, eq=False)
class Plane:
    """One 2-D image: a single-frame instance, or one frame of a multi-frame instance.

    Attributes:
        file: index of its file in the upload; frame: 0-based frame in that file.
        rows, columns: its size in pixels.
        position: ImagePositionPatient (3,) float64 mm, or None when absent / malformed.
        orientation: ImageOrientationPatient (6,) float64 direction cosines, or None.
        spacing: PixelSpacing (row, column) in mm, or None.
        thickness: SliceThickness in mm, or None.
    """

    file: int
    frame: int
    rows: int
    columns: int
    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: tuple[float, float] | None
    thickness: float | None


@dataclass(frozen=True, eq=False)
class Stack:
    """The series' planes in slice order.

    Attributes:
        groups: indices into the planes list, one group per slice position, ascending along
            the slice normal; a group of several planes holds duplicates (same position).
        affine: 4x4 float64, ``(slice, row, column, 1)`` of the stacked array (one slice per
            group, each in stored pixel order) -> LPS mm.
        warnings: plain-words notes (irregular spacing, slight tilt, assumed values).
    """

    groups: list[list[int]]
    affine: np.ndarray
    warnings: tuple[str, ...]


def planes_of(ds: Dataset, file: int, max_pixels: int) -> list[Plane]:
    """The planes of one image dataset (per-frame functional groups for multi-frame files).

    Raises:
        UnsupportedMediaError: missing or invalid Rows / Columns / Number of Frames.
        InputTooLargeError: this file alone has more than ``max_pixels`` pixels.
    """
    try:
        rows, columns = int(attr(ds, "Rows")), int(attr(ds, "Columns"))
        frames = max(int(attr(ds, "NumberOfFrames") or 1), 1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise UnsupportedMediaError(
            "a DICOM image has missing or invalid Rows / Columns / Number of Frames"
        ) from exc
    if rows <= 0 or columns <= 0:
        raise UnsupportedMediaError(f"a DICOM image is empty: {rows} rows x {columns} columns")
    check_pixel_limit(rows, columns, frames, max_pixels, "a DICOM image")
    per_frame = attr(ds, "PerFrameFunctionalGroupsSequence") or []
    shared = attr(ds, "SharedFunctionalGroupsSequence") or []
    planes = []
    for frame in range(frames):
        items = [per_frame[frame] if frame < len(per_frame) else None, *shared[:1], None]
        spacing = _floats(_group_value(items, ds, "PixelMeasuresSequence", "PixelSpacing"), 2)
        thickness = _floats(_group_value(items, ds, "PixelMeasuresSequence", "SliceThickness"), 1)
        planes.append(
            Plane(
                file=file,
                frame=frame,
                rows=rows,
                columns=columns,
                position=_floats(
                    _group_value(items, ds, "PlanePositionSequence", "ImagePositionPatient"), 3
                ),
                orientation=_floats(
                    _group_value(items, ds, "PlaneOrientationSequence", "ImageOrientationPatient"),
                    6,
                ),
                spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
                thickness=None if thickness is None else float(thickness[0]),
            )
        )
    return planes


def _group_value(items: list[Dataset | None], ds: Dataset, sequence: str, keyword: str) -> object:
    """``keyword`` from the per-frame item, else the shared item (in macro ``sequence``), else
    the top level of ``ds`` (the ``None`` item)."""
    for item in items:
        if item is None:
            value = attr(ds, keyword)
        else:
            macro = attr(item, sequence)
            value = attr(macro[0], keyword) if macro else None
        if value is not None:
            return value
    return None


def _floats(value: object, count: int) -> np.ndarray | None:
    """``count`` finite floats from a DS / multi-valued element, or None."""
    if value is None:
        return None
    values = [value] if isinstance(value, (str, int, float)) else value
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.isfinite(out).all() else None


def stack_planes(planes: list[Plane]) -> Stack:
    """Order, group and check ``planes`` (all of one series); see the module rules.

    Raises:
        SeriesError: mixed sizes / orientations / spacings, missing positions, a missing
            slice, irregular spacing beyond the bounds, or gantry tilt.
    """
    warnings: list[str] = []
    orientation = _common_orientation(planes, warnings)
    row_dir, column_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, column_dir)
    spacing = _common_spacing(planes, warnings)
    if len(planes) > 1 and any(p.position is None for p in planes):
        raise SeriesError(
            "some instances have no Image Position (Patient): the slices cannot be ordered; "
            "upload the original series from the scanner or PACS"
        )
    positions = np.array([p.position if p.position is not None else np.zeros(3) for p in planes])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    groups: list[list[int]] = []
    for index in order.tolist():
        if groups and along[index] - along[groups[-1][0]] < DUPLICATE_TOLERANCE_MM:
            groups[-1].append(index)
        else:
            groups.append([index])
    firsts = [group[0] for group in groups]
    step = _slice_step(planes, positions[firsts], along[firsts], normal, warnings)
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = column_dir * spacing[0]  # down a column: the row index grows
    affine[:3, 2] = row_dir * spacing[1]  # along a row: the column index grows
    affine[:3, 3] = positions[firsts[0]]
    return Stack(groups=groups, affine=affine, warnings=tuple(warnings))


def _common_orientation(planes: list[Plane], warnings: list[str]) -> np.ndarray:
    first = planes[0]
    for plane in planes[1:]:
        if (plane.rows, plane.columns) != (first.rows, first.columns):
            raise SeriesError(
                f"the instances have different sizes ({first.columns}x{first.rows} and "
                f"{plane.columns}x{plane.rows} pixels): the upload mixes series or "
                "reconstructions; upload one series"
            )
        same = (plane.orientation is None) == (first.orientation is None) and (
            first.orientation is None
            or plane.orientation is None
            or np.abs(plane.orientation - first.orientation).max() <= ORIENTATION_TOLERANCE
        )
        if not same:
            raise SeriesError(
                "the instances have different Image Orientation (Patient): the upload mixes "
                "series or reformats of different planes; upload one series"
            )
    if first.orientation is None:
        if len(planes) > 1:
            raise SeriesError(
                "the instances have no Image Orientation (Patient): the slices cannot be placed; "
                "upload the original series from the scanner or PACS"
            )
        warnings.append("the image has no orientation: taken as an axial slice")
        return AXIAL_ORIENTATION.copy()
    row_dir, column_dir = first.orientation[:3], first.orientation[3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(column_dir)
    if min(norms) < 0.5 or abs(float(row_dir @ column_dir)) > 0.01 * norms[0] * norms[1]:
        raise SeriesError(
            "the Image Orientation (Patient) is malformed (its row and column vectors are not "
            "perpendicular unit vectors): the file is corrupt"
        )
    return np.concatenate([row_dir / norms[0], column_dir / norms[1]])


def _common_spacing(planes: list[Plane], warnings: list[str]) -> tuple[float, float]:
    first = planes[0].spacing
    for plane in planes[1:]:
        if (plane.spacing is None) != (first is None) or (
            first is not None
            and plane.spacing is not None
            and max(abs(a - b) for a, b in zip(first, plane.spacing, strict=True))
            > SPACING_TOLERANCE_MM
        ):
            raise SeriesError(
                "the instances have different Pixel Spacing: the upload mixes reconstructions "
                "with different fields of view; upload one series"
            )
    if first is None or min(first) <= 0:
        warnings.append("the series has no valid pixel spacing: 1 mm assumed")
        return 1.0, 1.0
    return first


def _slice_step(
    planes: list[Plane],
    positions: np.ndarray,
    along: np.ndarray,
    normal: np.ndarray,
    warnings: list[str],
) -> np.ndarray:
    """The vector from one slice to the next (mm, LPS), after the gap and tilt checks."""
    if len(along) == 1:
        thickness = planes[0].thickness
        if thickness is not None and thickness > 0:
            return normal * thickness
        warnings.append("a single slice without Slice Thickness: 1 mm assumed")
        return normal.copy()
    gaps = np.diff(along)
    median = float(np.median(gaps))
    widest, narrowest = int(np.argmax(gaps)), int(np.argmin(gaps))
    if gaps[widest] > MAX_GAP_RATIO * median:
        raise SeriesError(
            f"slices are missing: a gap of {gaps[widest]:.2f} mm between slices at "
            f"{along[widest]:.2f} and {along[widest + 1]:.2f} mm along the slice normal, where "
            f"the series' spacing is {median:.2f} mm; upload every slice of the series"
        )
    if gaps[narrowest] < MIN_GAP_RATIO * median:
        raise SeriesError(
            f"irregular slice spacing: slices {gaps[narrowest]:.2f} mm apart where the series' "
            f"spacing is {median:.2f} mm; the upload mixes reconstructions, upload one series"
        )
    if float(np.abs(gaps - median).max()) > IRREGULAR_GAP_FRACTION * median:
        warnings.append(
            f"irregular slice spacing ({gaps.min():.2f} to {gaps.max():.2f} mm): the volume "
            f"uses the mean spacing of {float(gaps.mean()):.2f} mm"
        )
    span = positions[-1] - positions[0]
    height = float(span @ normal)
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(span - height * normal), abs(height))))
    if tilt > MAX_TILT_DEG:
        raise SeriesError(
            f"the slice positions are {tilt:.1f} degrees off the slice normal (gantry tilt): "
            "lungseg needs untilted slices; upload a reconstruction without tilt"
        )
    if tilt > TILT_WARNING_DEG:
        warnings.append(f"slight gantry tilt ({tilt:.2f} degrees) kept in the geometry")
    step: np.ndarray = span / (len(along) - 1)
    return step
