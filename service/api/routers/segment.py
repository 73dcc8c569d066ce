"""``POST /v1/segment``: one DICOM/PNG/JPEG in, lung and infection masks out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import SEGMENT
from service.api.deps import ImageUpload, MetricsDep, SegmenterDep, admitted, require
from service.api.errors import problems
from service.api.schemas import FrameResult, MaskSet, ModelRef, Rle, SegmentResponse, Timings
from service.api.uploads import IMAGE_BODY
from service.encoders import ENCODERS, encoder_for
from service.models.segmenter import ModalityChoice
from service.pipeline.result import EncodedFile, EncodedMasks, Segmentation

router = APIRouter(
    prefix="/v1",
    tags=["segment"],
    dependencies=[Depends(require(SEGMENT))],  # before admission and the upload
    responses=problems(400, 401, 403),
)
MODEL_HELP = "model kind: unet, cnn or threshold (GET /v1/models lists what is installed)"


def _mask(value: Any) -> Rle | str:
    return value if isinstance(value, str) else Rle(size=value["size"], counts=value["counts"])


def segment_response(result: Segmentation) -> SegmentResponse:
    """The core's result (masks encoded as JSON values) as the wire schema."""
    encoded = result.encoded
    if not isinstance(encoded, EncodedMasks):
        raise TypeError("segment_response needs masks encoded for JSON (rle or png)")
    frames = [
        FrameResult(
            index=i,
            masks=MaskSet(lung=_mask(e["lung"]), infection=_mask(e["infection"])),
            lung_found=f.decision.lung_found if f.decision else True,
            infection_detected=f.decision.infection_detected if f.decision else False,
            infection_score=f.decision.infection_score if f.decision else 0.0,
            warnings=list(f.decision.warnings) if f.decision else [],
            lung_area_px=f.stats.lung_area_px,
            infection_area_px=f.stats.infection_area_px,
            infection_percent=f.stats.infection_percent,
            lung_area_mm2=f.stats.lung_area_mm2,
            infection_area_mm2=f.stats.infection_area_mm2,
        )
        for i, (f, e) in enumerate(zip(result.frames, encoded.frames, strict=True))
    ]
    single = len(frames) == 1
    total = result.total
    return SegmentResponse(
        modality=result.modality,
        model=ModelRef(
            name=result.model.name,
            version=result.model.version,
            kind=result.model.kind,
            provider=result.provider,
        ),
        fallback=result.fallback,
        height=result.height,
        width=result.width,
        n_frames=len(frames),
        format=encoded.format,
        masks=frames[0].masks if single else None,
        frames=None if single else frames,
        timings_ms=Timings(**result.timings_ms),
        lung_area_px=total.lung_area_px,
        infection_area_px=total.infection_area_px,
        infection_percent=total.infection_percent,
        lung_area_mm2=total.lung_area_mm2,
        infection_area_mm2=total.infection_area_mm2,
        lung_found=result.lung_found,
        infection_detected=result.infection_detected,
        infection_score=result.infection_score,
        warnings=list(result.warnings),
    )


FILE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "JSON with the masks (format rle or png), or the result as a file: a "
        "DICOM Segmentation (format seg) or a FHIR R4 Bundle (format fhir)",
        "content": {
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
            "application/fhir+json": {"schema": {"type": "object"}},
        },
    }
}


def file_response(encoded: EncodedFile) -> Response:
    """An encoded file as the answer, named for download (the name holds no identifier)."""
    disposition = f'attachment; filename="{encoded.filename}"'
    headers = {"Content-Disposition": disposition}
    return Response(encoded.content, media_type=encoded.media_type, headers=headers)


@router.post(
    "/segment",
    response_model=SegmentResponse,
    dependencies=[Depends(admitted)],
    responses={**FILE_ANSWERS, **problems(400, 408, 413, 415, 422, 503)},
    openapi_extra=IMAGE_BODY,
)
async def segment(
    request: Request,
    data: ImageUpload,
    segmenter: SegmenterDep,
    metrics: MetricsDep,
    modality: Annotated[
        ModalityChoice, Query(description="auto: DICOM tag; PNG/JPEG = cxr")
    ] = "auto",
    model: Annotated[str | None, Query(description=MODEL_HELP)] = None,
    format: Annotated[
        str,
        Query(
            description="rle / png: masks in the JSON answer; seg: a DICOM Segmentation "
            "(DICOM input only); fhir: a FHIR R4 Bundle",
            json_schema_extra={"enum": list(ENCODERS)},
        ),
    ] = "rle",
) -> SegmentResponse | Response:
    """Segment the lungs and COVID-19 infection of one image (all frames of a multi-frame DICOM).

    Masks come back in the input's own size and stored pixel order. Not a medical device.
    """
    encoder = encoder_for(format)
    result = await run_in_threadpool(segmenter.segment_bytes, data, modality, model, encoder)
    request.state.model = result.model.name
    metrics.inference.labels(result.model.name, result.provider).observe(
        result.timings_ms["infer"] / 1000
    )
    if isinstance(result.encoded, EncodedFile):
        return file_response(result.encoded)
    return segment_response(result)
