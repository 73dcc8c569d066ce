"""Dependencies of the handlers: what the lifespan built, as ``Annotated`` aliases, the
authentication and scopes of a request, the admission of requests that do work, and the
uploaded file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.api.admission import Admission
from service.api.auth import SCOPES, Authenticator, Principal
from service.api.metrics import Metrics
from service.api.settings import Settings
from service.api.uploads import Upload, UploadLimits, read_upload
from service.benchmark.archive import ExtractionArea
from service.benchmark.jobs import BenchmarkRunner
from service.jobs import Reservation
from service.models.segmenter import Segmenter
from service.volumes.jobs import VolumeJobs


def settings(request: Request) -> Settings:
    return request.app.state.settings


def segmenter(request: Request) -> Segmenter:
    return request.app.state.segmenter


def metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def runner(request: Request) -> BenchmarkRunner:
    return request.app.state.runner


def extractions(request: Request) -> ExtractionArea:
    return request.app.state.extractions


def volume_jobs(request: Request) -> VolumeJobs:
    return request.app.state.volumes


SettingsDep = Annotated[Settings, Depends(settings)]
SegmenterDep = Annotated[Segmenter, Depends(segmenter)]
MetricsDep = Annotated[Metrics, Depends(metrics)]
RunnerDep = Annotated[BenchmarkRunner, Depends(runner)]
ExtractionsDep = Annotated[ExtractionArea, Depends(extractions)]
VolumesDep = Annotated[VolumeJobs, Depends(volume_jobs)]


async def benchmark_place(runner: RunnerDep) -> AsyncIterator[Reservation]:
    """A place in the worker's benchmark queue, taken before the upload is read (503 when
    none is free); freed at the end of the request unless a submitted run took it."""
    place = runner.reserve()
    try:
        yield place
    finally:
        if not place.taken:
            place.release()


BenchmarkPlace = Annotated[Reservation, Depends(benchmark_place)]


async def volume_place(volumes: VolumesDep) -> AsyncIterator[Reservation]:
    """A place in the worker's volume queue, taken before the upload is read (503 when none is
    free); freed at the end of the request unless a submitted job took it."""
    place = volumes.reserve()
    try:
        yield place
    finally:
        if not place.taken:
            place.release()


VolumePlace = Annotated[Reservation, Depends(volume_place)]


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


def upload_limits(settings: Settings, max_bytes: int) -> UploadLimits:
    return UploadLimits(
        max_bytes,
        settings.upload_timeout_s,
        settings.upload_min_bytes_per_s,
        settings.upload_deadline_s,
    )


async def image_upload(request: Request, settings: SettingsDep) -> bytes:
    """The uploaded image (multipart ``file`` or a raw body), at most LUNGSEG_MAX_UPLOAD_BYTES."""
    return (await read_upload(request, upload_limits(settings, settings.max_upload_bytes))).data


async def zip_upload(request: Request, settings: SettingsDep) -> Upload | None:
    """The uploaded zip of a labelled set (at most LUNGSEG_BENCHMARK_MAX_ZIP_BYTES), or None
    when the request has no body (a server-side set was named instead)."""
    has_body = request.headers.get("content-length", "0") != "0" or bool(
        request.headers.get("transfer-encoding")
    )
    if not has_body and not request.headers.get("content-type"):
        return None
    return await read_upload(request, upload_limits(settings, settings.benchmark_max_zip_bytes))


ImageUpload = Annotated[bytes, Depends(image_upload)]
ZipUpload = Annotated[Upload | None, Depends(zip_upload)]


BEARER = HTTPBearer(
    auto_error=False,
    description="an API key or an OIDC access token (JWT): `Authorization: Bearer <value>`",
)
API_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key, instead of Authorization"
)
BearerCredential = Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
ApiKeyCredential = Annotated[str | None, Depends(API_KEY)]


def authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(authenticator)]


async def principal(
    request: Request, auth: AuthenticatorDep, bearer: BearerCredential, api_key: ApiKeyCredential
) -> Principal:
    """Who sends the request (401 without a valid credential while authentication is on),
    also put on ``request.state.principal`` for the audit log."""
    found = await auth.authenticate(bearer.credentials if bearer else None, api_key)
    request.state.principal = found
    return found


PrincipalDep = Annotated[Principal, Depends(principal)]


def require(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A route-level dependency: the caller must hold ``admin`` or one of ``scopes`` (401
    without a valid credential, 403 without the scope). Solved before the other
    dependencies of the route (admission, upload) when listed first::

        router = APIRouter(dependencies=[Depends(require("segment"))])
    """
    unknown = set(scopes) - set(SCOPES)
    if not scopes or unknown:
        raise ValueError(f"require() needs scopes among {SCOPES}, not {sorted(unknown)}")

    async def scoped(who: PrincipalDep, auth: AuthenticatorDep) -> Principal:
        auth.authorize(who, scopes)
        return who

    scoped.__name__ = f"require_{'_or_'.join(scopes)}"
    return scoped


async def metrics_access(
    request: Request, auth: AuthenticatorDep, bearer: BearerCredential, api_key: ApiKeyCredential
) -> None:
    """GET /metrics: open, unless LUNGSEG_METRICS_AUTH=1 (then the scope metrics or admin)."""
    if auth.metrics_auth:
        auth.authorize_metrics(await principal(request, auth, bearer, api_key))
