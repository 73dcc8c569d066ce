"""The files of a finished volume job, made once while its volume is still in memory and kept in
the ``VolumeStore`` (readable from every replica), so that the job can drop the voxels.

* ``mask.nii.gz`` (``application/gzip``): the label map (0/1/2) as NIfTI, in the input NIfTI's
  shape and header, or the DICOM series' grid with its geometry (``encoders.nifti``);
* ``slices.json`` (``application/json``): per-slice COCO RLE in the input's slice order
  (``encoders.slices``), and ``slices-canonical.json`` the same in the canonical layout (the
  viewer's);
* ``seg.dcm`` (``application/dicom``): the DICOM SEG of a DICOM series
  (``encoders.dicom_seg``); none for NIfTI;
* ``fhir.json`` (``application/fhir+json``): the FHIR R4 Bundle of the volume measures per lung
  (``encoders.fhir``);
* ``preview.bin``: one byte per voxel for display under any window, bounded
  (``encoders.preview``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom

from service.encoders import nifti, preview, slices
from service.encoders.dicom_seg import encode_volume_seg
from service.encoders.fhir import Measures, encode_fhir
from service.imaging.volume import Volume
from service.pipeline.result import EncodedFile
from service.pipeline.volume import INFECTION, LUNG, LungMeasures, VolumeSegmentation

MASK_NIFTI = "mask.nii.gz"
MASK_RLE = "slices.json"
MASK_RLE_CANONICAL = "slices-canonical.json"
SEG = "seg.dcm"
FHIR = "fhir.json"
PREVIEW = "preview.bin"


@dataclass(frozen=True, repr=False)
class Artifacts:
    """The encoded files by store name; ``seg_uid``: the SEG's SOP Instance UID (None for
    NIfTI); ``preview``: the rendered slices' (rows, columns)."""

    files: dict[str, EncodedFile]
    seg_uid: str | None
    preview: tuple[int, int]

    def __repr__(self) -> str:
        return f"Artifacts({sorted(self.files)})"


def seg_file(volume: Volume, result: VolumeSegmentation) -> EncodedFile | None:
    """The SEG of a DICOM series' masks (lung, infection), None for a NIfTI volume."""
    if volume.source_format != "dicom" or volume.source is None:
        return None
    labels = result.labels
    return encode_volume_seg(
        volume,
        lung=labels >= LUNG,
        infection=labels == INFECTION,
        model_name=result.model.name,
        model_version=result.model.version,
    )


def _measures(lung: LungMeasures) -> Measures:
    return Measures(
        lung_volume_ml=lung.volume_ml,
        infection_volume_ml=lung.infection_volume_ml,
        infection_percent=lung.infection_percent,
    )


def fhir_file(result: VolumeSegmentation) -> EncodedFile:
    """The FHIR Bundle: totals, and per lung when the lungs were found."""
    per_lung = result.lungs.split != "none"
    measures = Measures(
        lung_volume_ml=result.lung_volume_ml,
        infection_volume_ml=result.infection_volume_ml,
        infection_percent=result.infection_percent,
        left=_measures(result.lungs.left) if per_lung else None,
        right=_measures(result.lungs.right) if per_lung else None,
    )
    return encode_fhir(
        measures,
        source=result.source,
        model_name=result.model.name,
        model_version=result.model.version,
        modality="ct",
    )


def sop_instance_uid(content: bytes) -> str:
    """The SOP Instance UID of a DICOM file we wrote."""
    header = pydicom.dcmread(io.BytesIO(content), stop_before_pixels=True)
    return str(header.SOPInstanceUID)


def display_files(volume: Volume) -> tuple[EncodedFile, tuple[int, int]]:
    """The preview of the volume's voxels (made first: the voxels may go right after)."""
    blob, info = preview.encode_preview(volume.voxels)
    return EncodedFile("preview", preview.MEDIA_TYPE, blob, PREVIEW), (info.rows, info.columns)


def result_files(result: VolumeSegmentation, seg: EncodedFile | None) -> dict[str, EncodedFile]:
    """The mask, RLE and FHIR files (and the SEG when there is one), by store name."""
    files = {
        MASK_NIFTI: nifti.encode_volume(result),
        MASK_RLE: slices.encode_volume(result),
        MASK_RLE_CANONICAL: slices.encode_canonical(result),
        FHIR: fhir_file(result),
    }
    if seg is not None:
        files[SEG] = seg
    return files
