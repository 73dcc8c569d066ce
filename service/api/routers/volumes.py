"""``/v1/volumes``: segment a CT volume (a DICOM series, a zip of one, a NIfTI, or a series in
the PACS) as a job; its status, progress and measures. Its files: ``volume_files``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import ADMIN, SEGMENT, Principal
from service.api.deps import (
    PrincipalDep,
    SegmenterDep,
    SettingsDep,
    VolumePlace,
    VolumesDep,
    admitted,
    require,
)
from service.api.errors import problems
from service.api.routers.segment import MODEL_HELP
from service.api.volume_body import VOLUME_BODY, VolumeBodyDep
from service.api.volume_schemas import UID_PATTERN, VolumeJob, VolumeList, VolumeResult
from service.errors import InvalidParameterError, NotFoundError
from service.imaging.volume_files import volume_files
from service.models.gates import StageClock
from service.volumes.document import VolumeRequest
from service.volumes.jobs import Payload, VolumeJobs

router = APIRouter(
    prefix="/v1/volumes",
    tags=["volumes"],
    dependencies=[Depends(require(SEGMENT))],  # before the queue place, admission, the upload
    responses=problems(400, 401, 403),
)
JobId = Annotated[str, Path(max_length=64, description="the job's id (from POST /v1/volumes)")]


def viewer_of(who: Principal) -> str | None:
    """Whose jobs a caller sees: its own (by client name), every job for ``admin``."""
    return None if ADMIN in who.scopes else who.name


def job_view(record: dict[str, Any], slices: bool = True) -> VolumeJob:
    """A stored job as the wire schema (``slices=False``: without the per-slice rows)."""
    params = record["params"]
    result = record.get("result")
    if result is not None and not slices:
        result = result | {"slices": None}
    return VolumeJob(
        id=record["id"],
        status=record["status"],
        source=params["source"],
        model=params.get("model"),
        store=bool(params.get("store")),
        progress=record["progress"],
        created=record["created"],
        finished=record["finished"],
        expires=record["expires"],
        error=record["error"],
        result=VolumeResult(**result) if result is not None else None,
        artifacts=record.get("artifacts", []),
    )


def find_job(volumes: VolumeJobs, job_id: str, who: Principal) -> dict[str, Any]:
    """The caller's job, NotFoundError (404) when unknown, expired or another client's."""
    record = volumes.get(job_id, viewer_of(who))
    if record is None:
        raise NotFoundError(f"no volume job {job_id!r} (unknown, or its results expired)")
    return record


def _store_flag(asked: bool | None, default: bool, volumes: VolumeJobs) -> bool:
    if asked and volumes.pacs is None:
        raise InvalidParameterError(
            "store=true sends the SEG to the PACS, but none is configured (LUNGSEG_DICOMWEB_URL)",
            "store",
        )
    return default if asked is None else asked


@router.post(
    "",
    response_model=VolumeJob,
    status_code=200,
    dependencies=[Depends(admitted)],
    responses={
        202: {"model": VolumeJob, "description": "queued: poll the Location"},
        **problems(408, 413, 415, 422, 503),
    },
    openapi_extra=VOLUME_BODY,
)
async def create_volume(
    response: Response,
    volumes: VolumesDep,
    segmenter: SegmenterDep,
    settings: SettingsDep,
    who: PrincipalDep,
    place: VolumePlace,
    body: VolumeBodyDep,
    model: Annotated[str | None, Query(description=MODEL_HELP)] = None,
    series_uid: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=UID_PATTERN,
            description="the series to segment when the upload holds several",
        ),
    ] = None,
    store: Annotated[
        bool | None,
        Query(
            description="store the DICOM SEG in the PACS when done "
            "(default: LUNGSEG_DICOMWEB_STORE)"
        ),
    ] = None,
) -> VolumeJob:
    """Segment a CT volume as a job: 202 + ``Location: /v1/volumes/{id}`` (small uploads, up
    to LUNGSEG_VOLUME_SYNC_MAX_SLICES, answer 200 with the result).

    An upload is assembled before the answer (a multi-series upload without ``series_uid`` is
    a 422 listing its series); a PACS series is retrieved by the job. Not a medical device.
    """
    if model is not None:
        segmenter.check_kind(model)
    keep = _store_flag(store, settings.dicomweb_store and volumes.pacs is not None, volumes)
    if body.pacs is not None:
        if volumes.pacs is None:
            raise InvalidParameterError(
                "a JSON body names a series in the PACS, but no PACS is configured "
                "(LUNGSEG_DICOMWEB_URL): upload the series' files instead"
            )
        if series_uid is not None and series_uid != body.pacs.series_uid:
            raise InvalidParameterError("series_uid differs from the body's", "series_uid")
        pull = VolumeRequest(
            "pacs", who.name, model, body.pacs.series_uid, body.pacs.study_uid, keep
        )
        record, _ = volumes.submit(pull, place)
        return _accepted(response, record)
    files = await run_in_threadpool(
        volume_files,
        body.files,
        max_bytes=settings.volume_max_upload_bytes,
        max_files=settings.volume_max_files,
    )
    body.files.clear()  # the raw parts (a zip) are not needed once expanded
    clock = StageClock()
    volume = await run_in_threadpool(volumes.load, files, series_uid, clock)
    if volume.source_format != "dicom" and keep:
        if store:
            raise InvalidParameterError(
                "store=true sends a DICOM SEG to the PACS, which needs a DICOM series: this "
                "volume is NIfTI",
                "store",
            )
        keep = False
    upload = VolumeRequest("upload", who.name, model, series_uid, None, keep)
    payload = Payload(volume, len(files), clock.ms.get("assemble", 0.0))
    slices = volume.shape[0]
    del volume, files
    record, future = volumes.submit(upload, place, payload)
    if slices > settings.volume_sync_max_slices:
        return _accepted(response, record)
    await asyncio.wrap_future(future)
    return job_view(volumes.get(record["id"], None) or record)


def _accepted(response: Response, record: dict[str, Any]) -> VolumeJob:
    response.status_code = 202
    response.headers["Location"] = f"/v1/volumes/{record['id']}"
    return job_view(record)


@router.get("", response_model=VolumeList, responses=problems(422))
def list_volumes(
    volumes: VolumesDep, who: PrincipalDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> VolumeList:
    """The caller's recent volume jobs (every client's for ``admin``), newest first, without
    their per-slice rows."""
    return VolumeList(jobs=[job_view(r, False) for r in volumes.list(limit, viewer_of(who))])


@router.get("/{job_id}", response_model=VolumeJob, responses=problems(404, 422))
def get_volume(job_id: JobId, volumes: VolumesDep, who: PrincipalDep) -> VolumeJob:
    """A job's status (queued, running, done, failed, interrupted), its progress and, once
    done, its result. 404 once it expired (LUNGSEG_RESULT_TTL_S)."""
    return job_view(find_job(volumes, job_id, who))
