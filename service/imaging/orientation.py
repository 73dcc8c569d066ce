"""Bring a volume to the one canonical orientation of 2-D axial segmentation, and back.

Canonical orientation (the radiological display convention the models were trained on), for
an array indexed ``(slice, row, column)``:

* slices are axial, ordered **inferior -> superior** (slice 0 is the lowest, nearest the feet;
  the index grows with the DICOM LPS z coordinate, as in NIfTI's RAS+ convention);
* rows run **anterior -> posterior** (row 0 is the patient's front, at the top of the image);
* columns run **patient right -> left** (the patient's right is on the image's left, as a
  radiologist views an axial slice from the feet).

In DICOM patient coordinates (LPS: +x left, +y posterior, +z superior) every canonical axis
therefore runs along the positive world axis: slice -> +z, row -> +y, column -> +x. Only axis
permutations and flips are applied (nibabel.orientations), never resampling: an oblique volume
takes the closest axes and its affine keeps the true (oblique) directions.

Affines here map ``(i, j, k, 1)`` voxel indices of the array they go with to LPS millimetres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from nibabel.affines import obliquity
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from service.errors import UnsupportedMediaError

logger = logging.getLogger(__name__)

CANONICAL_ORNT = np.array([[2.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
"""nibabel orientation of the canonical layout in LPS world axes (x=0, y=1, z=2): voxel axis 0
along +z (superior), axis 1 along +y (posterior), axis 2 along +x (left)."""
OBLIQUE_WARNING_DEG = 1.0
"""Axes further than this from the patient axes are reported as oblique."""


@dataclass(frozen=True, eq=False)
class Canonical:
    """An array brought to the canonical orientation.

    Attributes:
        voxels: the array in canonical ``(slice, row, column)`` layout (C-contiguous, same dtype).
        affine: 4x4 float64, canonical voxel index -> LPS mm.
        to_input: nibabel orientation transform (3, 2) that :func:`from_canonical` applies to
            an array in canonical layout to get the input's layout back.
        input_ornt: the input's own orientation (nibabel ``io_orientation`` of its affine).
        obliquity_deg: largest angle between a voxel axis and the patient axis it was taken as.
        warnings: plain-words notes (oblique volume).
    """

    voxels: np.ndarray
    affine: np.ndarray
    to_input: np.ndarray
    input_ornt: np.ndarray
    obliquity_deg: float
    warnings: tuple[str, ...]


def to_canonical(array: np.ndarray, affine_lps: np.ndarray) -> Canonical:
    """``array`` (3-D, any dtype) with its 4x4 voxel -> LPS mm affine, in canonical orientation.

    Raises:
        UnsupportedMediaError: the affine is degenerate (a zero, infinite or collinear axis).
    """
    affine = np.asarray(affine_lps, dtype=np.float64)
    if array.ndim != 3 or affine.shape != (4, 4):
        raise ValueError(f"need a 3-D array and a 4x4 affine, got {array.shape}, {affine.shape}")
    linear = affine[:3, :3]
    if not np.isfinite(affine).all() or abs(np.linalg.det(linear)) < 1e-9:
        raise UnsupportedMediaError(
            "the volume's voxel-to-patient transform is degenerate (a zero, infinite or "
            "collinear axis): the file's spacing or orientation is corrupt"
        )
    start = io_orientation(affine)
    forward = ornt_transform(start, CANONICAL_ORNT)
    voxels = np.ascontiguousarray(apply_orientation(array, forward))
    canonical_affine = affine @ inv_ornt_aff(forward, array.shape)
    angle = float(np.degrees(np.max(obliquity(affine))))
    warnings: tuple[str, ...] = ()
    if angle > OBLIQUE_WARNING_DEG:
        warnings = (
            f"the volume is oblique (an axis is {angle:.1f} degrees from the patient axes): it "
            "is shown in the closest axial orientation, without resampling",
        )
    logger.debug("reoriented %s -> %s, obliquity %.2f deg", array.shape, voxels.shape, angle)
    return Canonical(
        voxels=voxels,
        affine=canonical_affine,
        to_input=ornt_transform(CANONICAL_ORNT, start),
        input_ornt=start,
        obliquity_deg=angle,
        warnings=warnings,
    )


def from_canonical(array: np.ndarray, to_input: np.ndarray) -> np.ndarray:
    """An array in canonical layout back in the input's layout (the exact inverse of
    :func:`to_canonical`'s permutation and flips); C-contiguous, same dtype."""
    if array.ndim != 3:
        raise ValueError(f"need a 3-D array in canonical layout, got shape {array.shape}")
    return np.ascontiguousarray(apply_orientation(array, to_input))


def spacing_of(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the lengths of the affine's columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return float(norms[0]), float(norms[1]), float(norms[2])


RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""Multiplying an LPS affine on the left by this gives the RAS (NIfTI) affine, and back."""
