"""Benchmarks: score models on a labelled set (zip upload or a server-side set by name)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import RunnerDep, SettingsDep, read_upload
from service.api.schemas import BenchmarkJob, BenchmarkList
from service.api.settings import Settings
from service.benchmark.archive import extract_zip, find_set_root
from service.datasets import LabelledSet, read_set
from service.errors import InvalidInputError, LungsegError, NotFoundError
from service.models.segmenter import ModelChoice

router = APIRouter(prefix="/v1/benchmark", tags=["benchmark"])
ALL_MODELS: list[ModelChoice] = ["unet", "cnn", "threshold"]


def _open_zip(data: bytes, name: str, settings: Settings) -> tuple[LabelledSet, Path]:
    folder = extract_zip(data, settings.benchmark_max_unzipped_bytes, settings.benchmark_max_files)
    try:
        return read_set(find_set_root(folder), name=name), folder
    except LungsegError:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _server_set(name: str, settings: Settings) -> LabelledSet:
    path = settings.benchmark_sets.get(name)
    if path is None:
        known = ", ".join(sorted(settings.benchmark_sets)) or "none configured"
        raise NotFoundError(f"no server-side set {name!r} (known: {known})")
    return read_set(path, name=name)


BUSY = {
    "description": "LUNGSEG_BENCHMARK_MAX_PENDING runs queued or running: retry after Retry-After",
    "content": {"application/problem+json": {}},
}


@router.post(
    "",
    response_model=BenchmarkJob,
    status_code=200,
    responses={202: {"model": BenchmarkJob}, 503: BUSY},
)
async def start_benchmark(
    response: Response,
    runner: RunnerDep,
    settings: SettingsDep,
    file: UploadFile | None = None,
    set_name: Annotated[str | None, Query(description="a server-side set instead of a zip")] = None,
    models: Annotated[list[ModelChoice], Query(description="models to compare")] = ALL_MODELS,
) -> BenchmarkJob:
    """Compare models on a labelled set: 200 with results for small sets, else 202 + a job id."""
    if (file is None) == (set_name is None):
        raise InvalidInputError("send either a zip as the `file` field or `set_name`, not both")
    cleanup = None
    if file is not None:
        data = await read_upload(file, settings.benchmark_max_zip_bytes)
        name = Path(file.filename or "upload.zip").stem
        labelled, cleanup = await run_in_threadpool(_open_zip, data, name, settings)
    else:
        labelled = await run_in_threadpool(_server_set, str(set_name), settings)
    record, future = runner.submit(labelled, list(dict.fromkeys(models)), cleanup)
    if len(labelled.samples) > settings.benchmark_sync_max_images:
        response.status_code = 202
        response.headers["Location"] = f"/v1/benchmark/{record['id']}"
        return BenchmarkJob(**record)
    await asyncio.wrap_future(future)
    return BenchmarkJob(**(runner.store.get(record["id"]) or record))


@router.get("", response_model=BenchmarkList)
def list_benchmarks(
    runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> BenchmarkList:
    """Benchmark runs, newest first, without their per-image rows."""
    return BenchmarkList(runs=[BenchmarkJob(**r) for r in runner.store.list(limit)])


@router.get("/sets", response_model=list[str])
def list_sets(settings: SettingsDep) -> list[str]:
    """Names of the server-side sets (``LUNGSEG_BENCHMARK_SETS``)."""
    return sorted(settings.benchmark_sets)


@router.get(
    "/{run_id}", response_model=BenchmarkJob, responses={404: {"description": "unknown id"}}
)
def get_benchmark(run_id: str, runner: RunnerDep) -> BenchmarkJob:
    """Status of a run and, once done, its results."""
    record = runner.store.get(run_id)
    if record is None:
        raise NotFoundError(f"no benchmark run {run_id!r}")
    return BenchmarkJob(**record)
