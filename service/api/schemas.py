"""Request and response models of the HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service import NOT_A_MEDICAL_DEVICE


class Rle(BaseModel):
    """COCO run-length encoding as pycocotools writes it (column-major runs, compressed)."""

    size: list[int] = Field(description="[height, width] of the mask in pixels")
    counts: str = Field(description="pycocotools' compressed run-length string")


class MaskSet(BaseModel):
    """Masks in the input's own size and stored pixel order."""

    lung: Rle | str = Field(description="COCO RLE, or base64 PNG (0/255) with format=png")
    infection: Rle | str = Field(description="infection inside the lung, same encoding")


class Problem(BaseModel):
    """An RFC 7807 problem document (``application/problem+json``): every error answer."""

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="the HTTP status phrase")
    status: int
    detail: str = Field(description="what was wrong and how to fix it")
    instance: str = Field("", description="the path of the request")
    errors: list[dict[str, Any]] | None = Field(
        None, description="for 400/422 from parameter validation: each offending parameter"
    )
    series: list[dict[str, Any]] | None = Field(
        None,
        description="422 for an upload of several DICOM series without series_uid: each "
        "series (series_uid, description, modality, instances) to choose from",
    )


class ModelRef(BaseModel):
    name: str = Field(examples=["unet-cxr"])
    version: str
    kind: str = Field(description="what actually ran: a model kind (unet, cnn) or threshold")
    provider: str = Field(description="ONNX Runtime execution provider, or numpy")


class Areas(BaseModel):
    lung_area_px: int
    infection_area_px: int = Field(description="infection pixels inside the lung")
    infection_percent: float | None = Field(
        description="infection / lung x 100; 0 when no infection is detected, null when no lung"
        " is found"
    )
    lung_area_mm2: float | None = Field(None, description="with DICOM pixel spacing only")
    infection_area_mm2: float | None = Field(None, description="with DICOM pixel spacing only")


class Decision(BaseModel):
    """What the image shows, in plain terms (research use: not a diagnosis)."""

    lung_found: bool = Field(
        description="a chest image of the modality asked: false for a blank, tiny or non-chest "
        "image (the masks are then empty and infection_percent is null)"
    )
    infection_detected: bool = Field(
        description="COVID-19-pattern infection present by the model's decision head (or, for "
        "a model without one, any infection left after cleanup); false: its mask is empty"
    )
    infection_score: float = Field(
        description="0..1: the decision head's probability, or the infected fraction of the "
        "lung for a model without a head"
    )
    warnings: list[str] = Field(description="why no lung or no infection, in plain words")


class FrameResult(Areas, Decision):
    index: int
    masks: MaskSet


class Timings(BaseModel):
    decode: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    encode: float = 0.0
    total: float = 0.0


class SegmentResponse(Areas, Decision):
    """One segmented upload; areas are totals over frames for multi-frame DICOM, decisions
    those of the image (a lung / infection when any frame has one)."""

    modality: Literal["cxr", "ct"]
    model: ModelRef
    fallback: str | None = Field(description="why another model ran than the one asked for")
    height: int
    width: int
    n_frames: int
    format: str = Field(description="mask encoding: rle or png")
    masks: MaskSet | None = Field(description="the masks of a single-frame image")
    frames: list[FrameResult] | None = Field(description="per-frame results of multi-frame DICOM")
    timings_ms: Timings
    disclaimer: str = NOT_A_MEDICAL_DEVICE


class ModelEntry(BaseModel):
    name: str
    version: str
    kind: str
    modality: str
    provider: str
    precision: str = Field(description="the ONNX variant served: fp32, int8 or fp16")
    card: dict[str, Any]


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    unavailable: dict[str, str] = Field(description="model name -> why it did not load")
    fallback: list[str] = Field(description="always available classical segmenters")
    providers_available: list[str]


class Health(BaseModel):
    status: Literal["ok", "not ready"]
    models_loaded: list[str] = []
    models_unavailable: dict[str, str] = {}
    providers: dict[str, str] = {}


class Stat(BaseModel):
    mean: float | None = Field(description="mean over the images (null when there are none)")
    std: float | None
    n: int = Field(description="images the mean is over")


class StructureSummary(BaseModel):
    dice: Stat
    iou: Stat
    accuracy: Stat = Field(description="pixel accuracy")
    sensitivity: Stat
    specificity: Stat
    loss: Stat = Field(description="Dice + BCE of the probabilities; n = 0 for threshold")


class FalsePositiveRate(BaseModel):
    rate: float | None = Field(
        description="share of images without infection where some was marked"
    )
    n: int = Field(description="images whose infection reference is empty")


class Rate(BaseModel):
    rate: float | None = Field(description="share of the n images (null when n is 0)")
    n: int


class GroupSummary(BaseModel):
    n_images: int
    lung: StructureSummary = Field(description="over images with a lung reference")
    infection: StructureSummary = Field(
        description="over images whose infection is non-empty (a missed image scores 0)"
    )
    infection_false_positive_rate: FalsePositiveRate
    detection: Rate | None = Field(
        None,
        description="images where infection was detected: sensitivity for COVID-19 images, "
        "false detections for the others",
    )
    lung_found: Rate | None = Field(None, description="images where a lung was found")
    infection_percent_error: Stat | None = Field(
        None, description="|infection % of lung - the reference's|, points"
    )


class Summary(BaseModel):
    all: GroupSummary
    covid: GroupSummary = Field(description="COVID-19 images")
    non_covid: GroupSummary = Field(description="every other image")


class StructureScore(BaseModel):
    dice: float
    iou: float
    accuracy: float
    sensitivity: float
    specificity: float
    loss: float | None = Field(description="null for a backend without probabilities")
    ref_empty: bool
    pred_empty: bool


class ImageScore(BaseModel):
    id: str = Field(description="the sample's id in its set")
    group: str = Field(description="patient or case group")
    finding: str
    covid: bool
    lung: StructureScore | None = Field(description="null when the set has no lung mask")
    infection: StructureScore | None = Field(description="null when it has no infection mask")
    infection_percent: float | None = Field(description="null when no lung was found")
    lung_found: bool = True
    infection_detected: bool = False
    infection_score: float = 0.0
    infection_percent_error: float | None = Field(
        None, description="|infection % - the reference's| in points"
    )


class EntryModel(BaseModel):
    name: str
    version: str
    kind: str
    modality: str
    provider: str
    precision: str


class EntryTiming(BaseModel):
    ms_per_image: float = Field(description="wall time per image: decode, inference, scoring")
    total_ms: float
    n_images: int


class BenchmarkEntry(BaseModel):
    requested: str = Field(description="the model kind asked for")
    modality: str
    model: EntryModel = Field(description="what ran")
    fallback: str | None = Field(description="why another model ran than the one asked for")
    summary: Summary
    rows: list[ImageScore] = Field(description="one per image")
    timing: EntryTiming


class BenchmarkResults(BaseModel):
    set: str
    layout: str = Field(description="lungseg or covid-qu-ex")
    entries: list[BenchmarkEntry] = Field(description="one per (model, modality)")


class BenchmarkJob(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "interrupted"]
    set_name: str
    models: list[str]
    n_images: int
    created: str
    finished: str | None = None
    error: str | None = None
    results: BenchmarkResults | None = Field(None, description="once done (not in listings)")


class BenchmarkList(BaseModel):
    runs: list[BenchmarkJob]


class HistoryEntry(BaseModel):
    label: str = Field(description="model that ran, with the requested one when it fell back")
    requested: str
    model: str
    modality: str
    fallback: str | None
    lung_dice: float | None = Field(description="mean lung Dice over the set")
    infection_dice: float | None = Field(description="mean infection Dice (non-empty refs)")
    ms_per_image: float | None = Field(description="benchmark wall time per image (ms)")


class HistoryRun(BaseModel):
    id: str
    created: str
    set_name: str
    status: str
    n_images: int
    entries: list[HistoryEntry]


class History(BaseModel):
    runs: list[HistoryRun] = Field(description="oldest first")
