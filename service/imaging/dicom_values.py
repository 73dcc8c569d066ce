"""DICOM stored values to what the pipeline works in: Hounsfield units (CT) or display [0, 1].

The rules are those of ``service.imaging.dicom`` (Modality LUT / rescale, per-frame rescale of
enhanced CT, VOI LUT or window, robust min-max without either, MONOCHROME1 inverted last).
"""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

from service.errors import UnsupportedMediaError
from service.imaging.dicom_attrs import attr, pydicom_call
from service.imaging.raster import luma, robust_minmax

logger = logging.getLogger(__name__)

# What pydicom's VOI functions raise on a malformed window or LUT (bad VM, width < 1, bad depth).
_VOI_ERRORS = (ValueError, TypeError, IndexError, KeyError, AttributeError, NotImplementedError)


def to_hu(raw: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """Hounsfield units, float32 ``(frames, H, W)``."""
    if raw.ndim == 4:
        raise UnsupportedMediaError(
            f"colour ({photometric}) CT has no Hounsfield units; upload the original greyscale CT"
        )
    if attr(ds, "ModalityLUTSequence") or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        with pydicom_call("applying the Modality LUT / rescale"):
            return np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    items = [_frame_rescale(ds, index) for index in range(raw.shape[0])]
    hu = raw.astype(np.float32)
    for index, item in enumerate(items):
        if item is not None:  # no rescale anywhere: stored values are taken as HU
            with pydicom_call("applying the per-frame rescale"):
                hu[index] = apply_modality_lut(raw[index], item)
    return hu


def _frame_rescale(ds: Dataset, index: int) -> Dataset | None:
    """Pixel Value Transformation item (slope + intercept) for frame ``index``, or None."""
    places = (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0))
    for groups, position in places:
        sequence = attr(ds, groups)
        if not sequence or position >= len(sequence):
            continue
        transform = attr(sequence[position], "PixelValueTransformationSequence")
        if transform and "RescaleSlope" in transform[0] and "RescaleIntercept" in transform[0]:
            item: Dataset = transform[0]
            return item
    return None


def to_display(raw: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """[0, 1] float32 ``(frames, H, W)``, 1 = bright."""
    if raw.ndim == 4:  # colour: palette output spans its dtype, RGB spans Bits Stored
        palette = photometric == "PALETTE COLOR"
        full_scale = np.iinfo(raw.dtype).max if palette else (1 << bits_stored(ds)) - 1
        return np.clip(luma(raw) / np.float32(full_scale), 0.0, 1.0).astype(np.float32)
    with pydicom_call("applying the Modality LUT / rescale"):
        values = apply_modality_lut(raw, ds)
    display = _voi_display(values, ds)
    if display is None:
        display = robust_minmax(values)
    if photometric == "MONOCHROME1":
        display = np.float32(1.0) - display
    return display.astype(np.float32, copy=False)


def _voi_display(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """First VOI LUT or window applied and scaled to [0, 1] by its output range; None if absent."""
    voi_lut = attr(ds, "VOILUTSequence")
    window = attr(ds, "WindowCenter") is not None and attr(ds, "WindowWidth") is not None
    try:
        if voi_lut and "LUTDescriptor" in voi_lut[0] and "LUTData" in voi_lut[0]:
            descriptor = voi_lut[0].LUTDescriptor
            entries, first = int(descriptor[0]) or 65536, int(descriptor[1])
            out = apply_voi(np.rint(values).astype(np.int64), ds, 0).astype(np.float64)
            domain = np.arange(first, first + entries, dtype=np.int64)
            lut_values = apply_voi(domain, ds, 0)
            low, high = float(lut_values.min()), float(lut_values.max())
        elif window:
            out = apply_windowing(values, ds, 0)
            with np.errstate(over="ignore"):  # SIGMOID at the probe's extremes
                low, high = (float(v) for v in apply_windowing(np.array([-1e12, 1e12]), ds, 0))
        else:
            return None
    except _VOI_ERRORS as exc:  # pydicom's apply_voi / apply_windowing on a malformed VOI
        logger.warning("invalid VOI LUT / window (%s); using robust min-max", type(exc).__name__)
        return None
    if not high > low:
        return None
    return np.clip((out - low) / (high - low), 0.0, 1.0).astype(np.float32)


def bits_stored(ds: Dataset) -> int:
    value = attr(ds, "BitsStored") or attr(ds, "BitsAllocated") or 8
    return int(value) if isinstance(value, int) and 0 < value <= 32 else 8
