"""``POST /v1/render``: the decoded first frame as an 8-bit PNG, for display in a browser.

Browsers cannot show DICOM, nor Hounsfield units: the viewer draws the masks of
``POST /v1/segment`` over this rendering, which has the same size and pixel order as the masks.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import SegmenterDep, SettingsDep, read_upload
from service.api.routers.segment import PROBLEMS
from service.models.segmenter import Segmenter
from service.pipeline.params import CtWindow
from service.report.display import LUNG_WINDOW, display_frame, png_bytes

router = APIRouter(prefix="/v1", tags=["render"])
RESPONSES: dict[int | str, dict[str, Any]] = {code: spec for code, spec in PROBLEMS.items()}
RESPONSES[200] = {"content": {"image/png": {}}, "description": "8-bit grayscale PNG"}


def render_png(segmenter: Segmenter, data: bytes, window: CtWindow) -> bytes:
    """Decode ``data`` (as ``/v1/segment`` does) and encode its first frame, windowed when in
    HU, as a grayscale PNG."""
    return png_bytes(display_frame(segmenter.decode(data), window))


@router.post("/render", response_class=Response, responses=RESPONSES)
async def render(
    file: UploadFile,
    segmenter: SegmenterDep,
    settings: SettingsDep,
    window_level: Annotated[float, Query(description="CT window centre, HU")] = LUNG_WINDOW.level,
    window_width: Annotated[float, Query(gt=0, description="CT window, HU")] = LUNG_WINDOW.width,
) -> Response:
    """The first frame of a DICOM/PNG/JPEG as displayed: same size and pixel order as the masks.

    CT in Hounsfield units is shown through the window given (a lung window by default).
    """
    data = await read_upload(file, settings.max_upload_bytes)
    window = CtWindow(level=window_level, width=window_width)
    png = await run_in_threadpool(render_png, segmenter, data, window)
    return Response(content=png, media_type="image/png")
