"""A whole DICOM CT series (files held in memory) -> one :class:`Volume` in canonical orientation.

Rules:

* each file is parsed once (``service.imaging.dicom``); bytes that are not DICOM (no ``DICM``
  prefix nor a DICOM-like first tag) are skipped as ``not_dicom``; objects without pixel data
  nor Rows (SR, RTSTRUCT, presentation states, DICOMDIR) as ``non_image`` (Rows without pixel
  data is a truncated image: refused); localizers / scouts
  (ImageType contains LOCALIZER) as ``localizer``;
* the images are grouped by SeriesInstanceUID: several series without ``series_uid``, or a
  ``series_uid`` not among them, raise SeriesChoiceError listing each series;
* only CT makes a volume (a CR / DX series: UnsupportedModalityError);
* geometry checks and slice order: :mod:`service.imaging.series_geometry`, before decoding;
  ``max_pixels`` bounds all the series' planes together, from the headers;
* pixels and HU come from ``service.imaging.dicom`` (rescale per instance, every transfer
  syntax it decodes); duplicates at one position with identical pixels are dropped with a
  warning, with different pixels they raise SeriesError;
* only axial series (slice normal closest to the patient's head-feet axis) are accepted, so
  that each canonical slice is one instance's image (per-slice UIDs in ``Volume.source``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydicom.dataset import Dataset

from service.errors import (
    EmptyInputError,
    InvalidParameterError,
    SeriesChoiceError,
    SeriesError,
    UnsupportedMediaError,
    UnsupportedModalityError,
)
from service.imaging.dicom import decode_dataset, modality_of, read_dataset
from service.imaging.dicom_attrs import attr, text, uid
from service.imaging.orientation import spacing_of, to_canonical
from service.imaging.raster import check_pixel_limit
from service.imaging.series_geometry import Plane, planes_of, stack_planes
from service.imaging.sniff import DICOM_PREFIX, DICOM_PREFIX_OFFSET
from service.imaging.source import dicom_source
from service.imaging.types import SourceRef
from service.imaging.volume import InputLayout, Volume

logger = logging.getLogger(__name__)

# First tag of a preamble-less DICOM file: group 0x0002 or 0x0008 (little / big endian).
_BARE_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00", b"\x00\x08")


def assemble_series(
    files: Sequence[bytes], *, max_pixels: int, threads: int = 1, series_uid: str | None = None
) -> Volume:
    """Assemble the CT series in ``files`` (one DICOM file each, any order) into a Volume.

    Args:
        files: the uploaded files' bytes (a multi-frame enhanced CT may be a single file).
        max_pixels: most pixels over all planes of the series, checked from the headers.
        threads: decoding threads (files in parallel; one file: threads per JPEG 2000 frame).
        series_uid: the SeriesInstanceUID to assemble when the upload holds several series.

    Returns:
        Volume with float32 HU voxels in canonical orientation; ``to_input.file_index`` /
        ``frame_index`` index ``files``.

    Raises:
        EmptyInputError: no files. InvalidParameterError: bad ``max_pixels`` / ``threads``.
        SeriesChoiceError: several series and no (or an unknown) ``series_uid``.
        SeriesError: the series cannot make one volume (see the module rules).
        UnsupportedMediaError: no image at all, a corrupt file, a non-axial series.
        UnsupportedModalityError: the series is not CT.
        InputTooLargeError: more than ``max_pixels`` pixels.
    """
    if not files:
        raise EmptyInputError("the upload holds no files: send the DICOM files of one CT series")
    for name, value in (("max_pixels", max_pixels), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    skipped: Counter[str] = Counter()
    images = _images(files, max_pixels, skipped)
    chosen = _choose(images, series_uid, skipped)
    _check_ct(chosen)
    planes = [plane for index, ds in chosen for plane in planes_of(ds, index, max_pixels)]
    check_pixel_limit(planes[0].rows, planes[0].columns, len(planes), max_pixels, "the series")
    stack = stack_planes(planes)
    warnings = list(stack.warnings)
    kept = [group[0] for group in stack.groups]
    compared = {planes[other].file for group in stack.groups for other in group[1:]}
    array = _decode_into_stack(dict(chosen), planes, kept, max_pixels, threads, compared)
    _drop_duplicates(stack.groups, planes, array, dict(chosen), max_pixels, skipped, warnings)
    canonical = to_canonical(array, stack.affine)
    del array  # the canonical copy (or the same array, when the series is already canonical)
    if canonical.to_input[0, 0] != 0:
        raise UnsupportedMediaError(
            "the series is not axial (its slices are coronal or sagittal): lungseg segments "
            "axial CT slices; upload the axial series"
        )
    warnings.extend(canonical.warnings)
    in_voxel_order = kept if canonical.to_input[0, 1] > 0 else kept[::-1]
    logger.info(
        "series assembled: %d slices of %dx%d, skipped %s",
        len(kept),
        planes[0].rows,
        planes[0].columns,
        dict(skipped),
    )
    return Volume(
        voxels=canonical.voxels,
        units="hu",
        modality="ct",
        spacing_mm=spacing_of(canonical.affine),
        affine=canonical.affine,
        to_input=InputLayout(
            shape=(len(kept), planes[0].rows, planes[0].columns),
            to_input=canonical.to_input,
            affine=stack.affine,
            file_index=tuple(planes[i].file for i in kept),
            frame_index=tuple(planes[i].frame for i in kept),
        ),
        source_format="dicom",
        source=_source(dict(chosen), [planes[i] for i in in_voxel_order]),
        skipped=dict(skipped),
        warnings=tuple(warnings),
    )


def _images(
    files: Sequence[bytes], max_pixels: int, skipped: Counter[str]
) -> list[tuple[int, Dataset]]:
    """(file index, dataset) of each image file; the others are counted in ``skipped``."""
    images = []
    for index, data in enumerate(files):
        prefix = data[DICOM_PREFIX_OFFSET : DICOM_PREFIX_OFFSET + 4] == DICOM_PREFIX
        if not prefix and data[:2] not in _BARE_DICOM_GROUPS:
            skipped["not_dicom"] += 1
            continue
        try:
            ds = read_dataset(data, max_pixels=max_pixels)
        except UnsupportedMediaError as err:
            raise UnsupportedMediaError(f"file {index + 1} of {len(files)}: {err}") from err
        if "PixelData" not in ds and "Rows" in ds:
            raise UnsupportedMediaError(
                f"file {index + 1} of {len(files)} has image attributes but no pixel data: it "
                "is truncated; upload the complete files"
            )
        if "PixelData" not in ds:
            skipped["non_image"] += 1
        elif _is_localizer(ds):
            skipped["localizer"] += 1
        else:
            images.append((index, ds))
    if not images:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        raise UnsupportedMediaError(
            f"the upload holds no DICOM image to assemble ({counts or 'nothing'} skipped): "
            "send the image files of one CT series"
        )
    return images


def _is_localizer(ds: Dataset) -> bool:
    value = attr(ds, "ImageType") or ()
    values = str(value).split("\\") if isinstance(value, str) else [str(v) for v in value]
    return "LOCALIZER" in (v.strip().upper() for v in values)


def _choose(
    images: list[tuple[int, Dataset]], series_uid: str | None, skipped: Counter[str]
) -> list[tuple[int, Dataset]]:
    """The images of the one series to assemble."""
    by_series: dict[str, list[tuple[int, Dataset]]] = {}
    for index, ds in images:
        by_series.setdefault(uid(ds, "SeriesInstanceUID") or "", []).append((index, ds))
    if series_uid is None and len(by_series) == 1:
        return images
    wanted = (series_uid or "").strip()
    if series_uid is not None and wanted in by_series:
        skipped["other_series"] += len(images) - len(by_series[wanted])
        return by_series[wanted]
    summaries: list[dict[str, str | int]] = [
        {
            "series_uid": key,
            "description": str(attr(members[0][1], "SeriesDescription") or "").strip()[:64],
            "modality": text(members[0][1], "Modality", 16),
            "instances": len(members),
        }
        for key, members in by_series.items()
    ]
    listing = "; ".join(
        f"{s['series_uid'] or '(no Series Instance UID)'} ({s['description'] or 'no description'},"
        f" {s['modality'] or 'no modality'}, {s['instances']} instance(s))"
        for s in summaries
    )
    head = (
        f"series_uid {wanted!r} is not in the upload"
        if series_uid is not None
        else f"the upload holds {len(summaries)} series"
    )
    raise SeriesChoiceError(f"{head}; choose one with series_uid: {listing}", summaries)


def _check_ct(chosen: list[tuple[int, Dataset]]) -> None:
    if any(modality_of(ds) != "ct" for _, ds in chosen):
        raise UnsupportedModalityError(
            "the series holds chest radiographs (CR / DX), not CT: only a CT series makes a "
            "volume; upload radiographs one file at a time"
        )


def _decode_into_stack(
    datasets: dict[int, Dataset],
    planes: list[Plane],
    kept: list[int],
    max_pixels: int,
    threads: int,
    compared: set[int],
) -> np.ndarray:
    """float32 HU ``(len(kept), H, W)``: each kept plane's pixels, in ``kept``'s order.

    Each file is decoded once, straight into its rows of one preallocated array, and its
    compressed pixel data is released at once: the series' voxels are held once, not as
    decoded files plus a stacked copy (files decode in parallel, ``threads`` at a time).
    """
    rows, columns = planes[kept[0]].rows, planes[kept[0]].columns
    out = np.empty((len(kept), rows, columns), np.float32)
    targets: dict[int, list[tuple[int, int]]] = {}
    for position, index in enumerate(kept):
        targets.setdefault(planes[index].file, []).append((position, planes[index].frame))
    per_frame = threads if len(targets) == 1 else 1

    def one(file: int) -> None:
        pixels = decode_dataset(datasets[file], max_pixels=max_pixels, threads=per_frame).pixels
        for position, frame in targets[file]:
            out[position] = pixels[frame]
        if file not in compared and "PixelData" in datasets[file]:
            del datasets[file].PixelData  # decoded: the headers are all that is needed now

    files = sorted(targets)
    if threads == 1 or len(files) == 1:
        for file in files:
            one(file)
    else:
        with ThreadPoolExecutor(max_workers=min(threads, len(files))) as pool:
            list(pool.map(one, files))
    return out


def _drop_duplicates(
    groups: list[list[int]],
    planes: list[Plane],
    stacked: np.ndarray,
    datasets: dict[int, Dataset],
    max_pixels: int,
    skipped: Counter[str],
    warnings: list[str],
) -> None:
    """Identical instances at one position are dropped (the first is kept), different ones
    refused; a duplicate is decoded only to be compared with the kept plane."""
    dropped = 0
    for position, group in enumerate(groups):
        for other in group[1:]:
            plane = planes[other]
            pixels = decode_dataset(datasets[plane.file], max_pixels=max_pixels).pixels
            if not np.array_equal(stacked[position], pixels[plane.frame]):
                raise SeriesError(
                    "two instances at the same slice position have different pixels: the "
                    "upload mixes acquisitions under one Series Instance UID; upload one series"
                )
            dropped += 1
    if dropped:
        skipped["duplicate"] += dropped
        warnings.append(f"{dropped} duplicate instance(s) at the same position dropped")


def _source(datasets: dict[int, Dataset], slices: list[Plane]) -> SourceRef:
    """UIDs of the series; per-slice instance UIDs, headers and frame numbers."""
    refs = {plane.file: dicom_source(datasets[plane.file]) for plane in slices}
    first = refs[slices[0].file]
    return SourceRef(
        format="dicom",
        study_uid=first.study_uid,
        series_uid=first.series_uid,
        instance_uids=tuple((refs[p.file].instance_uids or ("",))[0] for p in slices),
        sop_class_uid=first.sop_class_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        modality_code=first.modality_code,
        headers=tuple(refs[p.file].headers[0] for p in slices),
        frame_numbers=tuple(p.frame + 1 for p in slices),
    )
