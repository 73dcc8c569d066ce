"""A segmented CT volume: its result dataclasses and the 3-D post-processing of its label map.

The volume path runs :func:`service.pipeline.run` over the canonical axial slices of a
:class:`~service.imaging.volume.Volume` with :func:`slice_params` (every lung component of a
slice kept: an apex or a base often shows as several pieces on one slice), writes each slice's
masks into one ``uint8`` label map (:func:`write_slices`) and then cleans it in 3-D here
(:func:`postprocess_volume`):

* lung components in 3-D with **6-connectivity** (4-connected in a slice, and through the
  voxel directly above or below): the ``lung_components`` largest (2) are kept, those under
  ``min_component_fraction`` of the largest dropped (the card's fractions). 6- rather than
  26-connectivity, so that a lung touching the other across a diagonal voxel at the anterior
  junction, or the bowel across the diaphragm, stays a separate component;
* holes filled per slice, each 2-D component on its own (the mediastinum between two lungs that
  touch in front and behind is not a hole of either);
* infection restricted to the kept lung (``infection_in_lung``).

Label values: 0 background, 1 lung, 2 infection (infection is part of the lung: lung = label
>= 1). Everything here is pure: arrays and parameters in, arrays and dataclasses out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from service.imaging.types import DecodedImage, SourceFormat, SourceRef
from service.imaging.volume import InputLayout, Volume, VolumeFormat
from service.pipeline.morphology import components, fill_holes
from service.pipeline.params import PostprocessParams
from service.pipeline.result import FrameResult, ModelInfo
from service.pipeline.run import CHUNK_FRAMES, Backend, StageRunner, direct, run
from service.pipeline.volume_components import Histograms, kept_ids, label_3d

BACKGROUND, LUNG, INFECTION = 0, 1, 2
ALL_COMPONENTS = 1 << 16
"""``lung_components`` of the 2-D step in the volume path: keep them all (selected in 3-D)."""


@dataclass(frozen=True)
class LungMeasures:
    """One lung (or both together): volumes in mL, infection inside it (``infection_percent``
    None when the volume holds no lung: a percentage of nothing)."""

    volume_ml: float
    infection_volume_ml: float
    infection_percent: float | None


@dataclass(frozen=True)
class Lungs:
    """The left and right lung, named from the patient coordinate system (LPS +x = left).

    ``split``: ``"components"`` (two separate 3-D components, each named by the patient x of
    its centroid), ``"midline"`` (lungs joined in 3-D, cut at the sagittal plane through the
    gap between them), ``"one_lung"`` (one lung found, named by its side of the body's
    midline; the other is empty) or ``"none"`` (no lung).
    """

    left: LungMeasures
    right: LungMeasures
    split: str


@dataclass(frozen=True)
class SliceMeasures:
    """One canonical slice.

    Attributes:
        index: canonical slice index (0 = most inferior).
        input_index: the slice's index along the input's slice axis (``input_slice_axis`` of
            the result; DICOM: the position in the sorted series).
        upload_index: DICOM: the file's 0-based position in the upload order; else None.
        z_mm: patient z (LPS, superior +) of the slice's centre, mm.
        lung_area_px, infection_area_px, lung_area_mm2, infection_area_mm2: areas.
        score: the model's infection score of the slice, when it has a decision head.
    """

    index: int
    input_index: int
    upload_index: int | None
    z_mm: float
    lung_area_px: int
    infection_area_px: int
    lung_area_mm2: float
    infection_area_mm2: float
    score: float | None = None


@dataclass(frozen=True, eq=False, repr=False)
class VolumeSegmentation:
    """The outcome of one volume.

    Attributes:
        labels: uint8 ``(slices, rows, columns)`` label map (0/1/2) in canonical layout;
            :meth:`labels_in_input` gives it in the input's own layout.
        affine: 4x4 canonical voxel index -> LPS mm (the Volume's).
        layout: the input's layout (shape, affine, NIfTI header, DICOM file order).
        n_slices, spacing_mm: canonical slice count, voxel size ``(slice, row, column)`` mm.
        voxel_ml: one voxel's volume (|det| of the affine's 3x3 part, mm³ / 1000).
        lung_volume_ml, infection_volume_ml, infection_percent: totals (``infection_percent``
            None when no lung was found).
        lungs: left and right (:class:`Lungs`).
        slices: one :class:`SliceMeasures` per canonical slice, inferior first.
        lung_found: any lung of a plausible size (``LUNG_FOUND_ML`` or more); without, the
            label map is emptied (as a single image's masks are) and a warning says why.
        infection_detected: infection of ``INFECTION_MIN_PERCENT`` of the lung and at least
            ``INFECTION_MIN_ML`` (both; a rule chosen a priori, see docs/volumes.md).
        warnings: plain-words notes (the Volume's and the measures'); no identifiers.
        model, provider, precision, fallback: what ran, and why not what was asked.
        timings_ms: stage wall times (assemble when the caller timed it, preprocess, infer,
            postprocess, volume_postprocess, encode when encoded, total).
        source_format: ``"dicom"`` or ``"nifti"``; source: the series' UIDs (never logged).
        input_slice_axis: the input array's axis holding the axial slices (DICOM: 0).
    """

    labels: np.ndarray
    affine: np.ndarray
    layout: InputLayout
    n_slices: int
    spacing_mm: tuple[float, float, float]
    voxel_ml: float
    lung_volume_ml: float
    infection_volume_ml: float
    infection_percent: float | None
    lungs: Lungs
    slices: list[SliceMeasures]
    lung_found: bool
    infection_detected: bool
    warnings: tuple[str, ...]
    model: ModelInfo
    provider: str
    precision: str
    fallback: str | None
    source_format: VolumeFormat
    input_slice_axis: int
    source: SourceRef | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    def labels_in_input(self) -> np.ndarray:
        """The label map in the input's layout (``Volume.mask_to_input`` of :attr:`labels`)."""
        return self.layout.from_canonical(self.labels)

    def __repr__(self) -> str:
        """No identifiers: shape, volumes, model."""
        return (
            f"VolumeSegmentation({self.labels.shape}, lung {self.lung_volume_ml:.0f} mL, "
            f"infection {self.infection_volume_ml:.1f} mL, {self.model.name})"
        )

    __str__ = __repr__


def slice_params(params: PostprocessParams) -> PostprocessParams:
    """The card's cleanup rules for the 2-D step of the volume path: every lung component of a
    slice is kept (the 3-D step selects them)."""
    return dataclasses.replace(params, lung_components=ALL_COMPONENTS, min_component_fraction=0.0)


def volume_slices(volume: Volume) -> DecodedImage:
    """The canonical axial slices of ``volume`` as one multi-frame image for :func:`run` (a
    view of the voxels, no copy)."""
    return DecodedImage(
        pixels=volume.voxels,
        units=volume.units,
        modality=volume.modality,
        source_format=cast(SourceFormat, volume.source_format),  # not read by the pipeline
        spacing_mm=(volume.spacing_mm[1], volume.spacing_mm[2]),
    )


def segment_slices(
    backend: Backend[Any],
    volume: Volume,
    *,
    stage: StageRunner = direct,
    chunk: int = CHUNK_FRAMES,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[float | None]]:
    """:func:`run` over the canonical slices of ``volume``, ``chunk`` at a time with
    :func:`slice_params`, ``progress(done, total)`` after each chunk.

    Returns:
        The uint8 label map (0/1/2, before :func:`postprocess_volume`) and each slice's score.
    """
    image = volume_slices(volume)
    labels = np.zeros(volume.shape, np.uint8)
    scores: list[float | None] = [None] * image.n_frames
    params = slice_params(backend.postprocess)
    step = max(chunk, 1)
    for start in range(0, image.n_frames, step):
        part = list(range(start, min(start + step, image.n_frames)))
        frames = run(
            backend, image, stage=stage, frames=part, chunk=step, params=params, decisions=False
        )
        write_slices(labels, scores, part, frames, backend.decision.threshold)
        if progress is not None:
            progress(part[-1] + 1, image.n_frames)
    return labels, scores


def write_slices(
    labels: np.ndarray,
    scores: list[float | None],
    part: list[int],
    frames: list[FrameResult],
    gate: float | None = None,
) -> None:
    """Write the 2-D results of canonical slices ``part`` into ``labels`` and ``scores``; a
    slice whose decision-head score is below ``gate`` (the card's operating point) keeps its
    lung but no infection (the head says there is none)."""
    for index, frame in zip(part, frames, strict=True):
        out = labels[index]
        out[...] = BACKGROUND
        out[frame.masks.lung] = LUNG
        if gate is None or frame.score is None or frame.score >= gate:
            out[frame.masks.infection] = INFECTION
        scores[index] = frame.score


def postprocess_volume(labels: np.ndarray, params: PostprocessParams) -> Histograms:
    """3-D cleanup of a uint8 label map (see the module rules), in place.

    Returns:
        Where the kept components lie (for the left / right split of the measures; the holes
        filled here in row 0).
    """
    found = label_3d(labels, LUNG)
    kept = found.largest(params.lung_components, params.min_component_fraction)
    histograms = Histograms.empty(found.count, found.box)
    for index in range(labels.shape[0]):
        if len(found.ids[index]) == 1:
            continue  # no lung on this slice (nor infection: it lies in the 2-D lung)
        plane = labels[index]
        ids = kept_ids(found, plane >= LUNG, index, kept)
        selected = ids > 0
        if params.fill_holes:
            selected = fill_each_hole(selected)
        inside = plane[found.box]
        infection = inside == INFECTION
        if params.infection_in_lung:
            infection &= selected
            plane[...] = BACKGROUND  # no lung outside the box, nor infection then
        else:
            inside[...] = BACKGROUND
        inside[selected] = LUNG
        inside[infection] = INFECTION
        present = np.intersect1d(found.ids[index][1:], kept)
        histograms.add(index, ids, selected, infection, present)
    return histograms


def fill_each_hole(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of each 8-connected component of a bool ``(H, W)`` mask on its own."""
    count, labels, stats, _ = components(mask)
    if count <= 2:
        return fill_holes(mask) if count == 2 else mask
    filled = mask.copy()
    for index in range(1, count):
        x, y, w, h = (int(v) for v in stats[index, :4])
        box = labels[y : y + h, x : x + w] == index
        filled[y : y + h, x : x + w] |= fill_holes(box)
    return filled
