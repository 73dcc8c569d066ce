"""Benchmarks: score models on a labelled set (zip upload or a server-side set by name), the
stored runs, and their history for the dashboard."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import BENCHMARK
from service.api.deps import (
    BenchmarkPlace,
    ExtractionsDep,
    RunnerDep,
    SegmenterDep,
    SettingsDep,
    ZipUpload,
    admitted,
    require,
)
from service.api.errors import problems
from service.api.schemas import BenchmarkJob, BenchmarkList, History, HistoryRun
from service.api.settings import Settings
from service.benchmark.archive import ExtractionArea, find_set_root
from service.benchmark.table import history
from service.datasets import LabelledSet, read_set
from service.errors import InvalidInputError, LungsegError, NotFoundError

router = APIRouter(
    prefix="/v1/benchmark",
    tags=["benchmark"],
    dependencies=[Depends(require(BENCHMARK))],  # before the queue place and the upload
    responses=problems(400, 401, 403),
)
ZIP_BODY = {
    "requestBody": {
        "required": False,
        "description": "a labelled set as a zip (multipart field `file`), unless set_name is given",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def _open_zip(
    area: ExtractionArea, data: bytes, name: str, settings: Settings
) -> tuple[LabelledSet, Path]:
    folder = area.extract(data, settings.benchmark_max_unzipped_bytes, settings.benchmark_max_files)
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


@router.post(
    "",
    response_model=BenchmarkJob,
    status_code=200,
    dependencies=[Depends(admitted)],
    responses={202: {"model": BenchmarkJob}, **problems(400, 404, 408, 413, 415, 422, 503)},
    openapi_extra=ZIP_BODY,
)
async def start_benchmark(
    response: Response,
    runner: RunnerDep,
    segmenter: SegmenterDep,
    settings: SettingsDep,
    area: ExtractionsDep,
    place: BenchmarkPlace,
    upload: ZipUpload,
    set_name: Annotated[str | None, Query(description="a server-side set instead of a zip")] = None,
    models: Annotated[
        list[str] | None, Query(description="model kinds to compare (default: every installed)")
    ] = None,
) -> BenchmarkJob:
    """Compare models on a labelled set: 200 with results for small sets, else 202 + a job id.

    A place in the worker's queue is taken before the upload is read (503 when none is free);
    an uploaded zip is extracted into the worker's private folder and removed with the run.
    """
    if (upload is None) == (set_name is None):
        raise InvalidInputError("send either a zip as the `file` field or `set_name`, not both")
    kinds = list(dict.fromkeys(models or segmenter.model_kinds()))
    for kind in kinds:
        segmenter.check_kind(kind)
    cleanup = None
    if upload is not None:
        name = Path(upload.filename or "upload.zip").stem
        labelled, cleanup = await run_in_threadpool(_open_zip, area, upload.data, name, settings)
    else:
        labelled = await run_in_threadpool(_server_set, str(set_name), settings)
    record, future = runner.submit(labelled, kinds, cleanup, place, server_side=upload is None)
    if len(labelled.samples) > settings.benchmark_sync_max_images:
        response.status_code = 202
        response.headers["Location"] = f"/v1/benchmark/{record['id']}"
        return BenchmarkJob(**record)
    await asyncio.wrap_future(future)
    return BenchmarkJob(**(runner.store.get(record["id"]) or record))


@router.get("", response_model=BenchmarkList, responses=problems(422))
def list_benchmarks(
    runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> BenchmarkList:
    """Benchmark runs, newest first, without their per-image rows."""
    return BenchmarkList(runs=[BenchmarkJob(**r) for r in runner.store.list(limit)])


@router.get("/sets", response_model=list[str])
def list_sets(settings: SettingsDep) -> list[str]:
    """Names of the server-side sets (``LUNGSEG_BENCHMARK_SETS``)."""
    return sorted(settings.benchmark_sets)


@router.get("/history", response_model=History, responses=problems(422))
async def benchmark_history(
    runner: RunnerDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> History:
    """Summary numbers of the newest ``limit`` runs, oldest first, for charts over time."""
    records = await run_in_threadpool(runner.store.list, limit, True)
    return History(runs=[HistoryRun(**point) for point in history(records)])


@router.get("/{run_id}", response_model=BenchmarkJob, responses=problems(404))
def get_benchmark(run_id: str, runner: RunnerDep) -> BenchmarkJob:
    """Status of a run and, once done, its results."""
    record = runner.store.get(run_id)
    if record is None:
        raise NotFoundError(f"no benchmark run {run_id!r}")
    return BenchmarkJob(**record)
