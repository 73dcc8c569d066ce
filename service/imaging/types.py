"""The decoded image: what every decoder returns and every later stage takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

Modality = Literal["cxr", "ct"]
Units = Literal["hu", "display"]
SourceFormat = Literal["dicom", "png", "jpeg"]


@dataclass(frozen=True, repr=False)
class SourceRef:
    """Identity of an upload's source.

    Attributes:
        format: ``"dicom"``, ``"png"``, ``"jpeg"`` (later also series and NIfTI).
        study_uid, series_uid: Study / Series Instance UID (DICOM), else None.
        instance_uids: SOP Instance UID of each source instance, in the order of the decoded
            frames' instances (one for a single or multi-frame file).
        sop_class_uid: SOP Class UID of the source instances.
        frame_of_reference_uid: Frame of Reference UID, when the source has one.
        modality_code: the DICOM Modality attribute as stored ("CT", "CR", "" when absent).
        headers: the source datasets without their pixel data, one per instance (DICOM SEG
            copies the Patient and Study modules from them).
        frame_numbers: for a volume (``service.imaging.volume.Volume``), the 1-based frame
            number in its instance of each slice (1 except in multi-frame files); in a volume
            ``instance_uids`` and ``headers`` also hold one entry per slice. () otherwise.
    """

    format: SourceFormat
    study_uid: str | None = None
    series_uid: str | None = None
    instance_uids: tuple[str, ...] = ()
    sop_class_uid: str | None = None
    frame_of_reference_uid: str | None = None
    modality_code: str | None = None
    headers: tuple[Dataset, ...] = field(default=(), compare=False)
    frame_numbers: tuple[int, ...] = ()

    def __repr__(self) -> str:
        """No identifiers: the format and how many instances, nothing else."""
        return f"SourceRef({self.format}, {len(self.instance_uids)} instance(s))"

    __str__ = __repr__


@dataclass(frozen=True)
class DecodedImage:
    """One decoded upload.

    Attributes:
        pixels: float32 array of shape ``(frames, height, width)`` in the stored pixel order
            (row 0 is the first stored row; no EXIF rotation, no flips). For ``units == "hu"``
            the values are Hounsfield units (CT after rescale slope/intercept); for
            ``units == "display"`` they lie in [0, 1] with 1 = bright (MONOCHROME1 already
            inverted, VOI window / LUT already applied for CR/DX DICOM).
        units: ``"hu"`` or ``"display"``.
        modality: ``"ct"`` or ``"cxr"`` from the DICOM Modality tag; ``None`` for PNG/JPEG,
            whose modality the caller states (default CXR).
        source_format: ``"dicom"``, ``"png"`` or ``"jpeg"``.
        spacing_mm: physical pixel spacing ``(row, column)`` in millimetres, or ``None`` when
            unknown (PNG/JPEG, or DICOM without a usable PixelSpacing / ImagerPixelSpacing).
        bits_stored: significant bits per sample of the source (8 for 8-bit PNG/JPEG).
        photometric: the source's photometric interpretation (e.g. ``"MONOCHROME1"``, ``"RGB"``).
        source: where the image came from (DICOM UIDs and headers), None for PNG/JPEG.
    """

    pixels: np.ndarray
    units: Units
    modality: Modality | None
    source_format: SourceFormat
    spacing_mm: tuple[float, float] | None = None
    bits_stored: int = 8
    photometric: str = "MONOCHROME2"
    source: SourceRef | None = None

    @property
    def n_frames(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as a float32 ``(height, width)`` array."""
        return self.pixels[index]
