"""Dependencies of the handlers: what the lifespan built, as ``Annotated`` aliases, the
admission of requests that do work, and the uploaded file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request

from service.api.admission import Admission
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.api.uploads import Upload, UploadLimits, read_upload
from service.benchmark.jobs import BenchmarkRunner
from service.models.segmenter import Segmenter


def settings(request: Request) -> Settings:
    return request.app.state.settings


def segmenter(request: Request) -> Segmenter:
    return request.app.state.segmenter


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def runner(request: Request) -> BenchmarkRunner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(settings)]
SegmenterDep = Annotated[Segmenter, Depends(segmenter)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
RunnerDep = Annotated[BenchmarkRunner, Depends(runner)]


async def admitted(request: Request) -> AsyncIterator[None]:
    """Hold one of the worker's admissions for the whole request, from before its upload is
    read: at capacity the answer is 503 + Retry-After at once (see ``service.api.admission``).

    A route-level dependency (``dependencies=[Depends(admitted)]``): FastAPI solves it before
    the handler's own parameters, so before the upload is read.
    """
    admission: Admission | None = getattr(request.app.state, "admission", None)
    if admission is None:  # the lifespan has not built it (yet)
        yield
        return
    async with admission.slot():
        yield


async def image_upload(request: Request, settings: SettingsDep) -> bytes:
    """The uploaded image (multipart ``file`` or a raw body), at most LUNGSEG_MAX_UPLOAD_BYTES."""
    limits = UploadLimits(settings.max_upload_bytes, settings.upload_timeout_s)
    return (await read_upload(request, limits)).data


async def zip_upload(request: Request, settings: SettingsDep) -> Upload | None:
    """The uploaded zip of a labelled set (at most LUNGSEG_BENCHMARK_MAX_ZIP_BYTES), or None
    when the request has no body (a server-side set was named instead)."""
    has_body = request.headers.get("content-length", "0") != "0" or bool(
        request.headers.get("transfer-encoding")
    )
    if not has_body and not request.headers.get("content-type"):
        return None
    limits = UploadLimits(settings.benchmark_max_zip_bytes, settings.upload_timeout_s)
    return await read_upload(request, limits)


ImageUpload = Annotated[bytes, Depends(image_upload)]
ZipUpload = Annotated[Upload | None, Depends(zip_upload)]
