"""``POST /v1/render``: the decoded first frame as an 8-bit PNG, for display in a browser.

Browsers cannot show DICOM, nor Hounsfield units: the viewer draws the masks of
``POST /v1/segment`` over this rendering, which has the same size and pixel order as the masks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import SEGMENT
from service.api.deps import ImageUpload, SegmenterDep, admitted, require
from service.api.errors import problems
from service.api.uploads import IMAGE_BODY
from service.encoders.display import LUNG_WINDOW, render_png
from service.models.segmenter import Segmenter
from service.pipeline.params import CtWindow

router = APIRouter(
    prefix="/v1",
    tags=["render"],
    dependencies=[Depends(require(SEGMENT))],  # before admission and the upload
    responses=problems(400, 401, 403),
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "8-bit grayscale PNG"},
    **problems(400, 408, 413, 415, 422, 503),
}


def _render(segmenter: Segmenter, data: bytes, window: CtWindow) -> bytes:
    return render_png(segmenter.decode(data), window)


@router.post(
    "/render",
    response_class=Response,
    dependencies=[Depends(admitted)],
    responses=RESPONSES,
    openapi_extra=IMAGE_BODY,
)
async def render(
    data: ImageUpload,
    segmenter: SegmenterDep,
    window_level: Annotated[float, Query(description="CT window centre, HU")] = LUNG_WINDOW.level,
    window_width: Annotated[float, Query(gt=0, description="CT window, HU")] = LUNG_WINDOW.width,
) -> Response:
    """The first frame of a DICOM/PNG/JPEG as displayed: same size and pixel order as the masks.

    CT in Hounsfield units is shown through the window given (a lung window by default).
    """
    window = CtWindow(level=window_level, width=window_width)
    png = await run_in_threadpool(_render, segmenter, data, window)
    return Response(content=png, media_type="image/png")
