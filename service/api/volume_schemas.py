"""Request and response models of the volume routes (``/v1/volumes``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from service import NOT_A_MEDICAL_DEVICE
from service.api.schemas import ModelRef

UID_PATTERN = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"
RESEARCH_USE = (
    "Research use only: the volumes and percentages are not a diagnosis and must not guide "
    "treatment."
)


class PacsSeries(BaseModel):
    """``POST /v1/volumes`` as JSON: a series for lungseg to retrieve from the configured PACS
    (WADO-RS, ``LUNGSEG_DICOMWEB_URL``)."""

    study_uid: str = Field(max_length=64, pattern=UID_PATTERN, description="Study Instance UID")
    series_uid: str = Field(max_length=64, pattern=UID_PATTERN, description="Series Instance UID")


class Progress(BaseModel):
    done: int = Field(description="slices segmented")
    total: int | None = Field(description="slices of the volume (null until it is assembled)")


class VolumeModel(ModelRef):
    precision: str = Field(description="the ONNX variant served: fp32, int8 or fp16")


class LungMeasures(BaseModel):
    volume_ml: float
    infection_volume_ml: float = Field(description="infection inside this lung, mL")
    infection_percent: float | None = Field(
        description="infection / lung volume x 100; null when no lung was found"
    )


class Lungs(BaseModel):
    left: LungMeasures = Field(description="the patient's left lung")
    right: LungMeasures = Field(description="the patient's right lung")
    split: Literal["components", "midline", "one_lung", "none"] = Field(
        description="how they were told apart: two separate 3-D components, cut at the "
        "sagittal plane between them (joined lungs), one lung only, or no lung"
    )


class SliceRow(BaseModel):
    """One canonical slice (inferior first)."""

    index: int = Field(description="canonical index: 0 = most inferior")
    input_index: int = Field(description="the slice's index along the input's slice axis")
    upload_index: int | None = Field(description="DICOM: the file's 0-based position uploaded")
    z_mm: float = Field(description="patient z (superior +) of the slice centre, mm")
    lung_area_px: int
    infection_area_px: int
    lung_area_mm2: float
    infection_area_mm2: float
    score: float | None = Field(description="the model's slice infection score, if it has one")


class Skipped(BaseModel):
    """Uploaded objects left out of the volume, by reason."""

    non_image: int = Field(0, description="no pixel data: SR, RTSTRUCT, presentation states")
    localizer: int = Field(0, description="localizer / scout images")
    not_dicom: int = Field(0, description="files that are not DICOM")
    duplicate: int = Field(0, description="identical instances at one position")
    other_series: int = Field(0, description="instances of the series not chosen")


class PreviewSize(BaseModel):
    rows: int = Field(description="height of GET .../slices/{index}.png")
    columns: int = Field(description="width (slices of large volumes are shrunk to fit)")


class StoreRecord(BaseModel):
    """What happened to the DICOM SEG sent back to the PACS (STOW-RS)."""

    status: Literal["stored", "partial", "failed"]
    seg_sop_instance_uid: str | None = Field(None, description="the SEG's SOP Instance UID")
    pacs_status: int | None = Field(None, description="the PACS's HTTP status (null: no answer)")
    stored: list[str] = Field([], description="SOP Instance UIDs the PACS reports stored")
    failed: list[dict[str, str | int | None]] = Field(
        [], description="instances the PACS refused, with its failure reason"
    )
    attempts: int = Field(description="STOW-RS requests made (retried only where safe)")
    error: str | None = Field(None, description="why not stored: PACS down, refused, timed out")
    retryable: bool | None = Field(None, description="whether a later retry may succeed")


class VolumeResult(BaseModel):
    """The measures of a segmented volume. Not a medical device."""

    n_slices: int
    shape: list[int] = Field(description="canonical (slices, rows, columns)")
    input_shape: list[int] = Field(description="the input's own array shape")
    input_slice_axis: int = Field(description="the input axis holding the axial slices")
    source_format: Literal["dicom", "nifti"]
    spacing_mm: list[float] = Field(description="(slice, row, column) voxel size, mm")
    voxel_ml: float
    lung_volume_ml: float
    infection_volume_ml: float = Field(description="infection inside the lung, mL")
    infection_percent: float | None = Field(
        description="infection / lung volume x 100; null when no lung was found"
    )
    lungs: Lungs
    lung_found: bool = Field(
        description="at least 100 mL of lung; without, the masks are empty and a warning says why"
    )
    infection_detected: bool = Field(
        description="infection of at least 0.5 % of the lung and 1 mL (a rule chosen a priori)"
    )
    warnings: list[str]
    model: VolumeModel
    fallback: str | None = Field(description="why another model ran than the one asked for")
    timings_ms: dict[str, float] = Field(
        description="assemble or retrieve, preprocess, infer, postprocess, "
        "volume_postprocess, encode, store, total"
    )
    files: int = Field(description="files received (zips expanded) or retrieved")
    skipped: Skipped
    preview: PreviewSize | None
    slices: list[SliceRow] | None = Field(description="one per canonical slice (not in lists)")
    store: StoreRecord | None = Field(description="the PACS store, when it was asked for")
    research_use: str = RESEARCH_USE


class Artifact(BaseModel):
    name: str
    media_type: str
    size: int


class VolumeJob(BaseModel):
    """A volume job: its status, progress and, once done, its result."""

    id: str
    status: Literal["queued", "running", "done", "failed", "interrupted"]
    source: Literal["upload", "pacs"]
    model: str | None = Field(description="the model kind asked for (null: the default)")
    store: bool = Field(description="whether the SEG is to be stored in the PACS")
    progress: Progress
    created: str
    finished: str | None = None
    expires: str = Field(description="when the job and its files are deleted")
    error: str | None = None
    result: VolumeResult | None = Field(None, description="once done")
    artifacts: list[Artifact] = Field(description="the job's files (mask, seg, fhir, ...)")
    disclaimer: str = NOT_A_MEDICAL_DEVICE


class VolumeList(BaseModel):
    jobs: list[VolumeJob] = Field(description="newest first, without per-slice rows")
