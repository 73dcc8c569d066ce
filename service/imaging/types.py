"""The decoded image: what every decoder returns and every later stage takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Modality = Literal["cxr", "ct"]
Units = Literal["hu", "display"]
SourceFormat = Literal["dicom", "png", "jpeg"]


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
    """

    pixels: np.ndarray
    units: Units
    modality: Modality | None
    source_format: SourceFormat
    spacing_mm: tuple[float, float] | None = None
    bits_stored: int = 8
    photometric: str = "MONOCHROME2"

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
