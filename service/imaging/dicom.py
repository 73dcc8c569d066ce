"""DICOM decoding from bytes in memory (pydicom + pylibjpeg plugins; no temporary files).

Rules (output is float32 ``(frames, H, W)`` in the stored pixel order):

* Modality ``CT`` -> ``"ct"``, ``units="hu"``: the Modality LUT / Rescale Slope+Intercept is
  applied (top level, or per frame from the Per-frame / Shared Functional Groups' Pixel Value
  Transformation Sequence of enhanced CT); without any rescale the stored values are taken as HU.
* ``CR``, ``DX``, ``RG``, and ``OT`` / no Modality with a MONOCHROME photometric -> ``"cxr"``,
  ``units="display"`` in [0, 1] with 1 = bright: Modality LUT / rescale, then the first VOI LUT
  (preferred) or the first Window Center/Width, scaled by that transform's output range; without
  VOI information the 0.5th..99.5th percentiles map to 0..1 (clipped). MONOCHROME1 is inverted
  last (``1 - v``). Colour (RGB / YBR / PALETTE COLOR) becomes grey by BT.601 luma.
* Any other Modality (MR, US, NM, PT, XA, ...) -> UnsupportedModalityError.

Decompression-bomb guards run before any pixel decoding: Rows x Columns x NumberOfFrames from
the header against ``max_pixels``; every JPEG / JPEG-LS / JPEG 2000 frame's own codestream size
against Rows x Columns; and a bounded inflate of Deflated Explicit VR Little Endian datasets.

pydicom reports malformed element values through ``warnings`` and its ``"pydicom"`` logger, and
those messages may quote the values; the application's logging setup decides where they go.
"""

from __future__ import annotations

import io
import logging
from itertools import islice

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.pixels import apply_color_lut
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from service.errors import UnsupportedMediaError, UnsupportedModalityError
from service.imaging import j2k
from service.imaging.dicom_attrs import attr, pydicom_call, text
from service.imaging.dicom_values import bits_stored, to_display, to_hu
from service.imaging.raster import check_pixel_limit, j2k_size, jpeg_size
from service.imaging.sniff import PYDICOM_PARSE_ERRORS, PYDICOM_PIXEL_ERRORS, check_deflated_size
from service.imaging.source import dicom_source
from service.imaging.types import DecodedImage, Modality

logger = logging.getLogger(__name__)

CXR_MODALITIES = frozenset({"CR", "DX", "RG"})
SECONDARY_CAPTURE_MODALITIES = frozenset({"OT", ""})
GREY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
CT_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
    }
)
CXR_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
        "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
        "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    }
)


def decode_dicom(data: bytes, *, max_pixels: int, threads: int = 1) -> DecodedImage:
    """Decode one DICOM file to a DecodedImage (float32 ``(frames, H, W)``; HU or [0, 1]).

    ``threads``: threads for each JPEG 2000 frame (``service.imaging.j2k``; others use one).

    Raises:
        UnsupportedMediaError: not parseable, truncated, corrupt, no pixel data, zero size.
        UnsupportedModalityError: a modality other than CT / CR / DX / RG / grey OT.
        InputTooLargeError: more than ``max_pixels`` pixels over all frames (from the header).
    """
    ds = _read(data, max_pixels)
    return decode_dataset(ds, max_pixels=max_pixels, threads=threads)


def read_dataset(data: bytes, *, max_pixels: int) -> Dataset:
    """Parse one DICOM file (bounded inflate of deflated datasets first); a dataset without
    pixel data is returned as it is (the caller decides whether to skip it).

    Raises:
        UnsupportedMediaError: not parseable, truncated or corrupt.
        InputTooLargeError: a deflated dataset inflating beyond the ``max_pixels`` bound.
    """
    check_deflated_size(data, max_pixels)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        has_pixels = "PixelData" in ds
    except PYDICOM_PARSE_ERRORS as exc:
        raise UnsupportedMediaError(
            f"the DICOM file could not be parsed ({type(exc).__name__}): it is corrupt or truncated"
        ) from exc
    if has_pixels and _transfer_syntax(ds) is None:  # preamble-less: native encoding
        implicit, little = ds.original_encoding
        native = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else native
    return ds


def modality_of(ds: Dataset) -> Modality:
    """``ct`` or ``cxr`` of a parsed dataset (the rules of :func:`decode_dicom`).

    Raises:
        UnsupportedModalityError: a modality other than CT / CR / DX / RG / grey OT.
    """
    return _modality(ds)


def decode_dataset(ds: Dataset, *, max_pixels: int, threads: int = 1) -> DecodedImage:
    """Decode a dataset from :func:`read_dataset` that has pixel data (see :func:`decode_dicom`)."""
    modality = _modality(ds)
    frames, rows, columns = _geometry(ds, max_pixels)
    photometric = text(ds, "PhotometricInterpretation")
    _check_codestreams(ds, frames, rows, columns)
    raw = _pixel_array(ds, frames, rows, columns, threads)
    convert = to_hu if modality == "ct" else to_display
    pixels = convert(raw, ds, photometric)
    if not np.isfinite(pixels).all():
        raise UnsupportedMediaError(
            "the DICOM Rescale Slope / Intercept give non-finite pixel values: the file is corrupt"
        )
    logger.debug("decoded DICOM %s %dx%dx%d %s", modality, frames, rows, columns, photometric)
    return DecodedImage(
        pixels=pixels,
        units="hu" if modality == "ct" else "display",
        modality=modality,
        source_format="dicom",
        spacing_mm=_spacing(ds, modality),
        bits_stored=bits_stored(ds),
        photometric=photometric or "MONOCHROME2",
        source=dicom_source(ds),
    )


def _read(data: bytes, max_pixels: int) -> Dataset:
    """Parse the whole dataset (force=True also accepts preamble-less DICOM); it must have
    pixel data."""
    ds = read_dataset(data, max_pixels=max_pixels)
    if "PixelData" not in ds:
        raise UnsupportedMediaError(_no_pixels_message(ds))
    return ds


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    syntax = attr(meta, "TransferSyntaxUID") if meta is not None else None
    return UID(str(syntax)) if syntax else None


def _sop_class(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    sop = attr(ds, "SOPClassUID") or (attr(meta, "MediaStorageSOPClassUID") if meta else None)
    return str(sop or "").strip()


def _no_pixels_message(ds: Dataset) -> str:
    sop = _sop_class(ds)
    kind = UID(sop).name if sop else "unknown SOP class"
    modality = text(ds, "Modality", 16)
    what = f"{kind}, modality {modality}" if modality else kind
    hint = " or the file is truncated" if "Rows" in ds else ""
    return (
        f"the DICOM file has no pixel data ({what}): it is not an image{hint}; "
        "upload a CR, DX or CT image"
    )


def _modality(ds: Dataset) -> Modality:
    """``ct`` or ``cxr`` from the Modality attribute, or from the SOP Class when it is absent
    (a CT Image Storage instance without Modality is still CT)."""
    code = text(ds, "Modality", 16)
    photometric = text(ds, "PhotometricInterpretation")
    if not code:
        sop = _sop_class(ds)
        code = "CT" if sop in CT_SOP_CLASSES else "CR" if sop in CXR_SOP_CLASSES else ""
    if code == "CT":
        return "ct"
    if code in CXR_MODALITIES:
        return "cxr"
    if code in SECONDARY_CAPTURE_MODALITIES:
        if photometric in GREY_PHOTOMETRICS:
            return "cxr"
        raise UnsupportedModalityError(
            f"DICOM with modality {code or '(none)'} and photometric {photometric or '(none)'} "
            "is not accepted: secondary captures must be greyscale chest radiographs"
        )
    raise UnsupportedModalityError(
        f"DICOM modality {code!r} is not supported: lungseg segments chest radiographs "
        "(CR, DX, RG) and CT"
    )


def _geometry(ds: Dataset, max_pixels: int) -> tuple[int, int, int]:
    """(frames, rows, columns) from the header, checked against zero size and ``max_pixels``."""
    try:
        rows, columns = int(attr(ds, "Rows")), int(attr(ds, "Columns"))
        frames = max(int(attr(ds, "NumberOfFrames") or 1), 1)
    except (TypeError, ValueError, OverflowError) as exc:  # absent or not a number
        raise UnsupportedMediaError(
            "the DICOM image has missing or invalid Rows / Columns / Number of Frames"
        ) from exc
    if rows <= 0 or columns <= 0:
        raise UnsupportedMediaError(f"the DICOM image is empty: {rows} rows x {columns} columns")
    check_pixel_limit(rows, columns, frames, max_pixels, "DICOM image")
    return frames, rows, columns


def _check_codestreams(ds: Dataset, frames: int, rows: int, columns: int) -> None:
    """Reject compressed frames whose own header is larger than Rows x Columns."""
    syntax = _transfer_syntax(ds)
    if syntax is None or not syntax.is_encapsulated:
        return
    is_j2k = syntax in JPEG2000TransferSyntaxes
    if not (is_j2k or syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes):
        return  # RLE and others: the decoder sizes its output from the header
    with pydicom_call("splitting the encapsulated pixel data into frames"):
        encoded = list(islice(generate_frames(ds.PixelData, number_of_frames=frames), frames))
    for index, frame in enumerate(encoded):
        size = j2k_size(frame) if is_j2k else jpeg_size(frame)
        if size is not None and (size[0] > rows or size[1] > columns):
            raise UnsupportedMediaError(
                f"compressed frame {index} is {size[1]}x{size[0]} pixels but the DICOM "
                f"header says {columns}x{rows}: the file is corrupt"
            )


def _pixel_array(ds: Dataset, frames: int, rows: int, columns: int, threads: int) -> np.ndarray:
    """Decoded samples as ``(frames, H, W)`` or ``(frames, H, W, 3)`` (YBR converted to RGB)."""
    syntax = _transfer_syntax(ds)
    try:
        if syntax in j2k.SYNTAXES and j2k.AVAILABLE:
            ds.pixel_array_options(
                allow_excess_frames=False,
                as_rgb=True,
                decoding_plugin=j2k.PLUGIN,
                j2k_threads=threads,
            )
        else:
            ds.pixel_array_options(allow_excess_frames=False, as_rgb=True)
        arr = ds.pixel_array
        if text(ds, "PhotometricInterpretation") == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
    except PYDICOM_PIXEL_ERRORS as exc:  # StopIteration: frames missing
        name = syntax.name if syntax else "unknown transfer syntax"
        raise UnsupportedMediaError(
            f"the DICOM pixel data could not be decoded ({name}, {type(exc).__name__}): "
            "the file is truncated or corrupt"
        ) from exc
    if frames == 1:
        arr = arr[np.newaxis]
    if arr.shape[:3] != (frames, rows, columns) or arr.ndim not in (3, 4):
        raise UnsupportedMediaError(
            f"the DICOM pixel data has shape {arr.shape}, not the {frames}x{rows}x{columns} "
            "its header declares"
        )
    return arr


def _spacing(ds: Dataset, modality: Modality) -> tuple[float, float] | None:
    """(row, column) pixel spacing in mm, or None when missing, zero or malformed."""
    candidates = [attr(ds, "PixelSpacing"), _functional_group_spacing(ds)]
    if modality == "cxr":
        candidates.append(attr(ds, "ImagerPixelSpacing"))
    for value in candidates:
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if np.isfinite(row) and np.isfinite(column) and row > 0 and column > 0:
            return row, column
    return None


def _functional_group_spacing(ds: Dataset) -> object:
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        sequence = attr(ds, groups)
        measures = attr(sequence[0], "PixelMeasuresSequence") if sequence else None
        if measures:
            return attr(measures[0], "PixelSpacing")
    return None
