"""Dependencies of the handlers: what the lifespan built, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, UploadFile

from service.api.metrics import Metrics
from service.api.settings import Settings
from service.benchmark.jobs import BenchmarkRunner
from service.errors import InputTooLargeError
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


async def read_upload(file: UploadFile, limit: int) -> bytes:
    """The upload's bytes, in memory; more than ``limit`` bytes raises InputTooLargeError."""
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(f"the upload exceeds {limit} bytes (LUNGSEG_MAX_UPLOAD_BYTES)")
    return data
