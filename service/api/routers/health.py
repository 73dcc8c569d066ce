"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.deps import MetricsDep, metrics_access
from service.api.errors import problems
from service.api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(request: Request) -> Health | JSONResponse:
    """Ready when the models have been loaded (failed ones are listed; they fall back)."""
    segmenter = getattr(request.app.state, "segmenter", None)
    if segmenter is None:
        return JSONResponse(Health(status="not ready").model_dump(), status_code=503)
    registry = segmenter.registry
    return Health(
        status="ok",
        models_loaded=sorted(registry.models),
        models_unavailable=dict(registry.unavailable),
        providers={name: b.provider for name, b in registry.models.items()},
    )


@router.get(
    "/metrics",
    response_class=Response,
    include_in_schema=True,
    dependencies=[Depends(metrics_access)],
    responses=problems(400, 401, 403),
    openapi_extra={"security": [{}]},  # open unless LUNGSEG_METRICS_AUTH=1
)
def prometheus(metrics: MetricsDep) -> Response:
    """Prometheus text exposition of the ``lungseg_`` metrics (summed over the workers).

    Open by default (cluster-internal scraping); with LUNGSEG_METRICS_AUTH=1 it needs the scope
    metrics or admin.
    """
    return Response(generate_latest(metrics.exposition), media_type=CONTENT_TYPE_LATEST)
