"""The decoded volume (a CT series or a NIfTI file), in the canonical orientation, with the
geometry that maps a mask back to the input voxel for voxel.

Conventions: the canonical orientation is that of :mod:`service.imaging.orientation` (slices
inferior -> superior, rows anterior -> posterior, columns patient right -> left); affines map
``(i, j, k, 1)`` voxel indices to patient coordinates in mm in DICOM LPS (+x left,
+y posterior, +z superior); the NIfTI (RAS) form is ``RAS_FROM_LPS @ affine``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from service.imaging.orientation import RAS_FROM_LPS, from_canonical
from service.imaging.types import Modality, SourceRef, Units

if TYPE_CHECKING:
    from nibabel.nifti1 import Nifti1Header

VolumeFormat = Literal["dicom", "nifti"]


@dataclass(frozen=True, eq=False, repr=False)
class InputLayout:
    """The input's own array and how canonical arrays map back onto it.

    Attributes:
        shape: shape of the input's own array. NIfTI: the stored data array ``(i, j, k)``
            (a trailing 4th axis of length 1 dropped). DICOM series: ``(slices, Rows,
            Columns)``: the slices in ascending position along the slice normal (the cross
            product of ImageOrientationPatient's row and column vectors), each in its stored
            pixel order (row 0 = first stored row).
        to_input: nibabel orientation transform (3, 2) from the canonical layout to ``shape``.
        affine: 4x4 float64, index of the input's array -> LPS mm (``affine_ras`` for NIfTI).
        file_index: DICOM: for each slice of the input array, the index of its file in the
            list given to ``assemble_series``; () for NIfTI.
        frame_index: DICOM: for each slice of the input array, its 0-based frame in that file
            (0 except in multi-frame files); () for NIfTI.
        nifti_header: the input NIfTI's header (to write masks back with the same geometry),
            else None.
    """

    shape: tuple[int, int, int]
    to_input: np.ndarray
    affine: np.ndarray
    file_index: tuple[int, ...] = ()
    frame_index: tuple[int, ...] = ()
    nifti_header: Nifti1Header | None = None

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4 float64, index of the input's array -> RAS mm (NIfTI's convention)."""
        ras: np.ndarray = RAS_FROM_LPS @ self.affine
        return ras

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """``array`` (canonical layout, any dtype) in the input's layout, shape ``shape``."""
        out = from_canonical(array, self.to_input)
        if out.shape != self.shape:
            raise ValueError(f"array of shape {array.shape} does not match the volume")
        return out

    def __repr__(self) -> str:
        return f"InputLayout(shape={self.shape})"


@dataclass(frozen=True, eq=False, repr=False)
class Volume:
    """One volume in canonical orientation.

    Attributes:
        voxels: float32 ``(slices, rows, columns)`` in canonical orientation; Hounsfield units
            for CT (``units == "hu"``).
        units: ``"hu"`` (the only units of a CT volume).
        modality: ``"ct"``.
        spacing_mm: voxel size ``(slice, row, column)`` in mm (the affine's column lengths).
        affine: 4x4 float64 mapping ``(slice, row, column, 1)`` indices of ``voxels`` to
            patient coordinates in mm, DICOM LPS.
        to_input: how to map an array in ``voxels`` layout back to the input (see
            :meth:`mask_to_input`), and the input's own shape and affine.
        source_format: ``"dicom"`` (a series or a multi-frame file) or ``"nifti"``.
        source: DICOM: UIDs of the series, with ``instance_uids``, ``headers`` and
            ``frame_numbers`` holding one entry per slice of ``voxels``, in ``voxels`` order.
            None for NIfTI.
        skipped: how many uploaded objects were left out, by reason: ``"non_image"`` (no pixel
            data: SR, RTSTRUCT, presentation states, DICOMDIR), ``"localizer"``,
            ``"not_dicom"``, ``"duplicate"`` (identical instance at the same position),
            ``"other_series"`` (instances of series not chosen); absent reasons are 0.
        warnings: plain-words notes for the caller (no identifiers).
    """

    voxels: np.ndarray
    units: Units
    modality: Modality
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    to_input: InputLayout
    source_format: VolumeFormat
    source: SourceRef | None = None
    skipped: Mapping[str, int] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        slices, rows, columns = self.voxels.shape
        return int(slices), int(rows), int(columns)

    def mask_to_input(self, mask: np.ndarray) -> np.ndarray:
        """A mask (any dtype) of shape ``voxels.shape`` in the input's own layout.

        NIfTI: an array of the input's stored shape, to save with ``to_input.affine_ras``
        (and ``to_input.nifti_header``). DICOM: ``(slices, Rows, Columns)`` in stored pixel
        order, slice ``k`` belonging to file ``to_input.file_index[k]``, frame
        ``to_input.frame_index[k]``.

        Raises:
            ValueError: ``mask`` is not of shape ``voxels.shape``.
        """
        if mask.shape != self.voxels.shape:
            raise ValueError(f"mask of shape {mask.shape}, the volume is {self.voxels.shape}")
        return self.to_input.from_canonical(mask)

    def __repr__(self) -> str:
        """No identifiers: format, shape, spacing."""
        spacing = "x".join(f"{s:.3g}" for s in self.spacing_mm)
        return f"Volume({self.source_format}, {self.shape}, {spacing} mm, {self.units})"

    __str__ = __repr__
