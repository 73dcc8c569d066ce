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


class ModelRef(BaseModel):
    name: str = Field(examples=["unet-cxr"])
    version: str
    kind: Literal["unet", "cnn", "threshold"] = Field(description="what actually ran")
    provider: str = Field(description="ONNX Runtime execution provider, or numpy")


class Areas(BaseModel):
    lung_area_px: int
    infection_area_px: int = Field(description="infection pixels inside the lung")
    infection_percent: float = Field(description="infection / lung x 100; 0 when no lung")
    lung_area_mm2: float | None = Field(None, description="with DICOM pixel spacing only")
    infection_area_mm2: float | None = Field(None, description="with DICOM pixel spacing only")


class FrameResult(Areas):
    index: int
    masks: MaskSet


class Timings(BaseModel):
    decode: float = 0.0
    preprocess: float = 0.0
    infer: float = 0.0
    postprocess: float = 0.0
    encode: float = 0.0
    total: float = 0.0


class SegmentResponse(Areas):
    """One segmented upload; areas are totals over frames for multi-frame DICOM."""

    modality: Literal["cxr", "ct"]
    model: ModelRef
    fallback: str | None = Field(description="why another model ran than the one asked for")
    height: int
    width: int
    n_frames: int
    format: Literal["rle", "png"]
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


class BenchmarkJob(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "interrupted"]
    set_name: str
    models: list[str]
    n_images: int
    created: str
    finished: str | None = None
    error: str | None = None
    results: dict[str, Any] | None = Field(
        None, description="per model: summary (all/covid/non_covid) and per-image rows"
    )


class BenchmarkList(BaseModel):
    runs: list[BenchmarkJob]
