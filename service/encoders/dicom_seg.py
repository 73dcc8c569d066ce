"""The ``seg`` output format: lung and infection masks as one DICOM Segmentation (highdicom).

Entry points: :func:`encode_result` (a single-image request), :func:`encode_seg` (any DICOM
source, masks in the source's stored order) and :func:`encode_volume_seg` (a DICOM series /
multi-frame :class:`~service.imaging.volume.Volume`, masks in its canonical layout).

:func:`encode_seg` serves a single image, a multi-frame object and a whole series alike: the
masks are bool ``(frames, Rows, Columns)`` in the stored pixel order of each source frame
(frame ``i`` of the masks is frame ``source.frame_numbers[i]`` of instance
``source.headers[i]``; without frame numbers, frame ``i`` of the one header, or the ``i``-th
single-frame header). Nothing is resampled: each SEG frame references its own source frame.

What is written: a BINARY SEG (SOP class 1.2.840.10008.5.1.4.1.1.66.4), new Series and SOP
Instance UIDs per call, series number :data:`SERIES_NUMBER`, a series description saying
research use; the Patient and Study modules copied from the source (highdicom); the source's
Frame of Reference; segments 1 "Lung" (or 1 "Left lung" and 2 "Right lung" when the caller
gives split lungs) and then "Infection", coded as :mod:`service.encoders.seg_codes` says, each
with its algorithm identification (model name, version, family "Artificial Intelligence");
every frame kept, empty or not (``omit_empty_frames=False``: viewers misplace segments whose
empty frames are missing); JPEG 2000 lossless frames when the uncompressed (1-bit packed)
pixel data would exceed ``compress_over_bytes`` (1 MiB by default), else Explicit VR Little
Endian.

What real files lack (no Modality, no Frame of Reference, empty Patient / Study modules,
PixelSpacing ``0\\0``, UIDs only in the file meta, ...) is completed or left out as the standard
allows, case by case: :mod:`service.encoders.seg_sources` lists them.

Impossible cases raise UnsupportedMediaError with the reason: several multi-frame instances in
one SEG, several frames without a patient position (nothing orders them), slices of different
sizes or Frames of Reference. A source without DICOM headers (PNG, JPEG) raises
InvalidParameterError on parameter ``format``.

highdicom's warnings about the source's attributes (they may quote the patient's name) are
silenced (a warnings filter on the highdicom modules), so that they never reach a log.
"""

from __future__ import annotations

import io
import math
import warnings
from importlib import metadata

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
)

from service.encoders.seg_segments import MANUFACTURER, segments
from service.encoders.seg_sources import prepare_headers
from service.errors import InvalidParameterError, UnsupportedMediaError
from service.imaging.types import SourceRef
from service.imaging.volume import Volume
from service.pipeline.result import EncodedFile, Segmentation


def _silence_highdicom() -> None:
    """Ignore highdicom's warnings (they quote source attributes, the patient's name among
    them). Idempotent (the filter is moved to the front, not added twice); called at import
    and again by each encoding, in case a ``catch_warnings`` block dropped it since."""
    warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")


_silence_highdicom()

FORMAT = "seg"
MEDIA_TYPE = "application/dicom"
COMPRESS_OVER_BYTES = 1 << 20
"""Uncompressed SEG pixel data (bits packed) above which frames are JPEG 2000 lossless."""
SERIES_NUMBER = 990
SERIES_DESCRIPTION = "lungseg lung+infection SEG - research use, not for diagnosis"
CONTENT_LABEL = "LUNGSEG"
CONTENT_DESCRIPTION = "Lung and COVID-19 infection; research use, not a medical device"


def encode_result(result: Segmentation) -> EncodedFile:
    """The SEG of a single-image request (one file: single or multi-frame), from its masks.

    Raises:
        InvalidParameterError: the upload was not DICOM (PNG / JPEG have no headers to refer
            to), parameter ``format``.
    """
    source = result.source
    if source is None or source.format != "dicom" or not source.headers:
        raise InvalidParameterError(
            "format=seg needs a DICOM source: a DICOM SEG refers to the source instances, and "
            "PNG / JPEG uploads have none; upload the DICOM file or choose another format",
            "format",
        )
    lung = np.stack([f.masks.lung for f in result.frames])
    infection = np.stack([f.masks.infection for f in result.frames])
    return encode_seg(
        source,
        lung=lung,
        infection=infection,
        model_name=result.model.name,
        model_version=result.model.version,
    )


def in_source_order(volume: Volume, mask: np.ndarray) -> np.ndarray:
    """A mask in the canonical layout of ``volume`` (``voxels.shape``) as ``(slices, Rows,
    Columns)`` in each slice's stored pixel order, slice ``k`` being that of
    ``volume.source.headers[k]`` / ``frame_numbers[k]`` (the layout :func:`encode_seg` takes).

    The canonical slices are the input's slices (an axial series) in the same or the reverse
    order, as the orientation transform's slice flip says.
    """
    stored = volume.mask_to_input(mask)
    return stored if volume.to_input.to_input[0, 1] > 0 else stored[::-1]


def encode_volume_seg(
    volume: Volume,
    *,
    infection: np.ndarray,
    model_name: str,
    model_version: str,
    lung: np.ndarray | None = None,
    left_lung: np.ndarray | None = None,
    right_lung: np.ndarray | None = None,
    compress_over_bytes: int = COMPRESS_OVER_BYTES,
) -> EncodedFile:
    """:func:`encode_seg` of a DICOM volume's masks given in its canonical layout
    (``volume.voxels.shape``); InvalidParameterError (``format``) for a NIfTI volume."""
    if volume.source is None or volume.source_format != "dicom":
        raise InvalidParameterError(
            "format=seg needs a DICOM source: a NIfTI volume has no DICOM instances to refer "
            "to; choose another format",
            "format",
        )

    def stored(mask: np.ndarray | None) -> np.ndarray | None:
        return None if mask is None else in_source_order(volume, mask)

    return encode_seg(
        volume.source,
        infection=in_source_order(volume, infection),
        model_name=model_name,
        model_version=model_version,
        lung=stored(lung),
        left_lung=stored(left_lung),
        right_lung=stored(right_lung),
        compress_over_bytes=compress_over_bytes,
    )


def encode_seg(
    source: SourceRef,
    *,
    infection: np.ndarray,
    model_name: str,
    model_version: str,
    lung: np.ndarray | None = None,
    left_lung: np.ndarray | None = None,
    right_lung: np.ndarray | None = None,
    compress_over_bytes: int = COMPRESS_OVER_BYTES,
) -> EncodedFile:
    """A DICOM SEG of the masks of ``source``'s frames (see the module docstring).

    Args:
        source: the DICOM source; ``headers`` one per instance (a single or multi-frame file:
            one header; a series: one per slice, with ``frame_numbers``).
        infection: bool ``(frames, Rows, Columns)`` (or ``(Rows, Columns)`` for one frame).
        model_name, model_version: the model that made the masks (Algorithm Identification).
        lung: the lungs as one mask, or else ``left_lung`` and ``right_lung`` (patient's left
            and right), each shaped as ``infection``.
        compress_over_bytes: JPEG 2000 lossless above this many uncompressed bytes.

    Returns:
        EncodedFile ``seg``, ``application/dicom``, named ``<SOP Instance UID>.dcm``.

    Raises:
        InvalidParameterError: ``source`` has no DICOM headers (parameter ``format``).
        UnsupportedMediaError: the source cannot carry one SEG (see the module docstring).
        ValueError: masks that do not match the source or each other (a caller's bug).
    """
    if source.format != "dicom" or not source.headers:
        raise InvalidParameterError(
            "format=seg needs a DICOM source (PNG / JPEG uploads have no DICOM headers to "
            "refer to); choose another format",
            "format",
        )
    _silence_highdicom()
    masks, descriptions = segments(
        infection, lung, left_lung, right_lung, model_name, model_version
    )
    headers, pixels = _layout(source, masks)
    frames = int(pixels.shape[0]) * int(pixels.shape[3])
    packed = math.ceil(frames * int(pixels.shape[1]) * int(pixels.shape[2]) / 8)
    syntax = JPEG2000Lossless if packed > compress_over_bytes else ExplicitVRLittleEndian
    seg = hd.seg.Segmentation(
        source_images=headers,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model_name[:64],
        software_versions=[_version(), f"{model_name}-{model_version}"[:64]],  # type: ignore[arg-type]
        device_serial_number=model_version[:64] or "0",
        content_label=CONTENT_LABEL,
        content_description=CONTENT_DESCRIPTION,
        transfer_syntax_uid=syntax,
        omit_empty_frames=False,
        series_description=SERIES_DESCRIPTION,
    )
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        seg.PatientOrientation = headers[0].get("PatientOrientation") or ""  # type 2C
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return EncodedFile(FORMAT, MEDIA_TYPE, buffer.getvalue(), "lungseg-seg.dcm")


def _version() -> str:
    try:
        return f"lungseg {metadata.version('lungseg')}"
    except metadata.PackageNotFoundError:
        return "lungseg"


def _layout(source: SourceRef, masks: list[np.ndarray]) -> tuple[list[Dataset], np.ndarray]:
    """The prepared source headers and the uint8 ``(frames, H, W, segments)`` pixel array in
    the order highdicom pairs them: frame ``i`` with the ``i``-th single-frame header, or with
    frame ``i + 1`` of the one multi-frame header."""
    count = int(masks[0].shape[0])
    headers = list(source.headers)
    if source.frame_numbers:
        numbers = list(source.frame_numbers)
        if len(numbers) != count or len(headers) != count:
            raise ValueError(
                f"{count} mask frames for {len(headers)} headers and {len(numbers)} frame numbers"
            )
    elif len(headers) == 1:
        numbers = list(range(1, count + 1))
        headers = headers * count
    elif len(headers) == count:
        numbers = [1] * count
    else:
        raise ValueError(f"{count} mask frames for {len(headers)} source headers")
    stacked = np.stack(masks, axis=-1).astype(np.uint8)
    distinct: dict[int, Dataset] = {}
    for header in headers:
        distinct.setdefault(id(header), header)
    prepared = prepare_headers(source, list(distinct.values()))
    by_id = dict(zip(distinct, prepared, strict=True))
    first = prepared[0]
    multi = [h for h in prepared if int(h.get("NumberOfFrames") or 1) > 1]
    if multi:
        if len(prepared) > 1:
            raise UnsupportedMediaError(
                "the source holds several multi-frame instances: one DICOM SEG refers to one "
                "multi-frame image or to single-frame images; send one multi-frame file"
            )
        total = int(first.NumberOfFrames)
        pixels = np.zeros((total, *stacked.shape[1:]), np.uint8)
        for index, number in enumerate(numbers):
            if not 1 <= number <= total:
                raise ValueError(f"frame number {number} outside 1..{total}")
            pixels[number - 1] = stacked[index]
        _check_size(first, pixels)
        return [first], pixels
    ordered = [by_id[id(h)] for h in headers]
    if len({id(h) for h in ordered}) != len(ordered):
        raise ValueError("a single-frame source instance appears twice in the masks' frames")
    if len(ordered) > 1 and any("ImagePositionPatient" not in h for h in ordered):
        raise UnsupportedMediaError(
            "the source's slices have no Image Position (Patient): a DICOM SEG of several "
            "frames needs their positions; send a series with positions or one image"
        )
    for header in ordered:
        _check_size(header, stacked)
    return ordered, stacked


def _check_size(header: Dataset, pixels: np.ndarray) -> None:
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    if (rows, columns) != tuple(pixels.shape[1:3]):
        raise ValueError(f"masks of {pixels.shape[1:3]} for a source of {rows}x{columns}")
