"""``POST /v1/segment``: one DICOM/PNG/JPEG in, lung and infection masks out."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import MetricsDep, SegmenterDep, SettingsDep, read_upload
from service.api.schemas import FrameResult, MaskSet, ModelRef, Rle, SegmentResponse, Timings
from service.models.segmenter import ModalityChoice, ModelChoice, Segmentation, Segmenter
from service.pipeline.encode import encode_mask
from service.pipeline.postprocess import Masks

router = APIRouter(prefix="/v1", tags=["segment"])
Format = Literal["rle", "png"]
PROBLEMS = {
    s: {"description": d, "content": {"application/problem+json": {}}}
    for s, d in [
        (400, "empty upload or malformed request"),
        (408, "the upload stopped sending data (LUNGSEG_UPLOAD_TIMEOUT_S)"),
        (413, "upload or image too large"),
        (415, "unsupported or undecodable file"),
        (422, "invalid parameter value"),
        (503, "at capacity: retry after Retry-After seconds"),
    ]
}


def _encode(mask: np.ndarray, fmt: Format) -> Rle | str:
    encoded = encode_mask(mask, fmt)
    return encoded if isinstance(encoded, str) else Rle(**encoded)


def _masks(masks: Masks, fmt: Format) -> MaskSet:
    return MaskSet(lung=_encode(masks.lung, fmt), infection=_encode(masks.infection, fmt))


def to_response(result: Segmentation, fmt: Format) -> SegmentResponse:
    """Translate the core's result to the wire format, timing the encoding."""
    start = time.perf_counter()
    frames = [
        FrameResult(index=i, masks=_masks(f.masks, fmt), **vars(f.stats))
        for i, f in enumerate(result.frames)
    ]
    single = len(frames) == 1
    timings = dict(result.timings_ms)
    timings["encode"] = (time.perf_counter() - start) * 1000
    timings["total"] += timings["encode"]
    return SegmentResponse(
        modality=result.modality,
        model=ModelRef(**vars(result.model) | {"provider": result.provider}),
        fallback=result.fallback,
        height=result.height,
        width=result.width,
        n_frames=len(frames),
        format=fmt,
        masks=frames[0].masks if single else None,
        frames=None if single else frames,
        timings_ms=Timings(**timings),
        **vars(result.total),
    )


def segment_and_encode(
    segmenter: Segmenter, data: bytes, modality: ModalityChoice, model: ModelChoice, fmt: Format
) -> tuple[Segmentation, SegmentResponse]:
    result = segmenter.segment_bytes(data, modality, model)
    return result, to_response(result, fmt)


@router.post("/segment", response_model=SegmentResponse, responses=PROBLEMS)  # type: ignore[arg-type]
async def segment(
    request: Request,
    file: UploadFile,
    segmenter: SegmenterDep,
    metrics: MetricsDep,
    settings: SettingsDep,
    modality: Annotated[
        ModalityChoice, Query(description="auto: DICOM tag; PNG/JPEG = cxr")
    ] = "auto",
    model: Annotated[ModelChoice, Query(description="network to run")] = "unet",
    format: Annotated[Format, Query(description="mask encoding")] = "rle",
) -> SegmentResponse:
    """Segment the lungs and COVID-19 infection of one image (all frames of a multi-frame DICOM).

    Masks come back in the input's own size and stored pixel order. Not a medical device.
    """
    data = await read_upload(file, settings.max_upload_bytes)
    result, response = await run_in_threadpool(
        segment_and_encode, segmenter, data, modality, model, format
    )
    request.state.model = result.model.name
    metrics.inference.labels(result.model.name, result.provider).observe(
        result.timings_ms["infer"] / 1000
    )
    return response
