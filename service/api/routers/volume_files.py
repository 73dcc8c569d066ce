"""The files of a finished volume job, from the job store (any replica answers): the mask as
NIfTI or per-slice RLE, the DICOM SEG, the FHIR Bundle, and one slice rendered for display.

404 for an unknown or expired job (or another client's), 409 while it is not done (or when it
failed), 409 for a SEG of a volume that came as NIfTI.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from service.api.auth import SEGMENT
from service.api.deps import PrincipalDep, VolumesDep, require
from service.api.errors import problems
from service.api.routers.volumes import JobId, find_job
from service.benchmark.volume_store import Artifact
from service.encoders.preview import WINDOWS, render_slice
from service.errors import ConflictError, InvalidParameterError, NotFoundError
from service.volumes import artifacts
from service.volumes.jobs import VolumeJobs

router = APIRouter(
    prefix="/v1/volumes",
    tags=["volumes"],
    dependencies=[Depends(require(SEGMENT))],
    responses=problems(400, 401, 403, 404, 409, 422),
)
DOWNLOADS = {
    artifacts.MASK_NIFTI: "lungseg-labels.nii.gz",
    artifacts.MASK_RLE: "lungseg-slices.json",
    artifacts.MASK_RLE_CANONICAL: "lungseg-slices-canonical.json",
    artifacts.SEG: "lungseg-seg.dcm",
    artifacts.FHIR: "lungseg-report.fhir.json",
}


def binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {media_type: {}}}}


def _done(volumes: VolumeJobs, job_id: str, who: Any) -> dict[str, Any]:
    record = find_job(volumes, job_id, who)
    status = record["status"]
    if status in ("queued", "running"):
        progress = record["progress"]
        raise ConflictError(
            f"the job is {status} ({progress['done']} of {progress['total'] or '?'} slices): "
            "retry when GET /v1/volumes/{id} says done"
        )
    if status != "done":
        raise ConflictError(f"the job {status}: it has no files ({record['error'] or 'no result'})")
    return record


def _file(volumes: VolumeJobs, job_id: str, name: str) -> Response:
    found: Artifact | None = volumes.artifact(job_id, name)
    if found is None:
        raise NotFoundError(f"volume job {job_id!r} has no {name} (its results expired?)")
    disposition = f'attachment; filename="{DOWNLOADS[name]}"'
    return Response(
        found.content, media_type=found.media_type, headers={"Content-Disposition": disposition}
    )


@router.get(
    "/{job_id}/mask",
    response_class=Response,
    responses={
        200: {
            "description": "the label map (0 background, 1 lung, 2 infection)",
            "content": {"application/gzip": {}, "application/json": {}},
        }
    },
)
def volume_mask(
    job_id: JobId,
    volumes: VolumesDep,
    who: PrincipalDep,
    format: Annotated[
        Literal["nifti", "rle"],
        Query(description="nifti: .nii.gz label map; rle: per-slice COCO RLE JSON"),
    ] = "nifti",
    layout: Annotated[
        Literal["input", "canonical"],
        Query(
            description="input: the input's own array and slice order (NIfTI: its shape and "
            "affine; DICOM: the series' grid); canonical (rle only): slices inferior -> "
            "superior, rows anterior -> posterior, columns patient right -> left"
        ),
    ] = "input",
) -> Response:
    """The masks of a done job as NIfTI (``application/gzip``) or per-slice RLE JSON."""
    if format == "nifti" and layout == "canonical":
        raise InvalidParameterError("layout=canonical is for format=rle", "layout")
    _done(volumes, job_id, who)
    if format == "nifti":
        return _file(volumes, job_id, artifacts.MASK_NIFTI)
    name = artifacts.MASK_RLE if layout == "input" else artifacts.MASK_RLE_CANONICAL
    return _file(volumes, job_id, name)


@router.get(
    "/{job_id}/seg",
    response_class=Response,
    responses=binary("application/dicom", "the DICOM Segmentation (BINARY) of the series"),
)
def volume_seg(job_id: JobId, volumes: VolumesDep, who: PrincipalDep) -> Response:
    """The DICOM SEG of a done job whose input was a DICOM series (409 for NIfTI)."""
    record = _done(volumes, job_id, who)
    if (record.get("result") or {}).get("source_format") != "dicom":
        raise ConflictError(
            "a DICOM SEG refers to the DICOM instances it segments, and this volume came as "
            "NIfTI: download the mask as NIfTI (GET .../mask?format=nifti) instead"
        )
    return _file(volumes, job_id, artifacts.SEG)


@router.get(
    "/{job_id}/fhir",
    response_class=Response,
    responses=binary("application/fhir+json", "a FHIR R4 transaction Bundle of the measures"),
)
def volume_fhir(job_id: JobId, volumes: VolumesDep, who: PrincipalDep) -> Response:
    """The volume measures (per lung) as a FHIR R4 Bundle for an EHR."""
    _done(volumes, job_id, who)
    return _file(volumes, job_id, artifacts.FHIR)


@router.get(
    "/{job_id}/slices/{index}.png",
    response_class=Response,
    responses=binary("image/png", "8-bit grayscale slice in the canonical orientation"),
)
async def volume_slice(
    job_id: JobId,
    index: Annotated[int, Path(ge=0, le=100_000, description="canonical slice (0: inferior)")],
    volumes: VolumesDep,
    who: PrincipalDep,
    window: Annotated[
        Literal["lung", "mediastinum"],
        Query(description="lung: -600 / 1500 HU; mediastinum: 40 / 400 HU"),
    ] = "lung",
) -> Response:
    """One slice of a done job for display, in the canonical orientation (patient's right on
    the image's left, anterior at the top), through a window preset; shrunk for large
    volumes (the result's ``preview`` gives the size). Not for diagnosis."""
    record = _done(volumes, job_id, who)
    found = volumes.artifact(job_id, artifacts.PREVIEW)
    slices = (record.get("result") or {}).get("n_slices", 0)
    if found is None or not index < slices:
        raise NotFoundError(f"volume job {job_id!r} has no slice {index} (it has {slices})")
    png = await run_in_threadpool(render_slice, found.content, index, WINDOWS[window])
    return Response(png, media_type="image/png")
