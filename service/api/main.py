"""The FastAPI application: wiring only (routers, error handlers, middleware, static files)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from service import NOT_A_MEDICAL_DEVICE, __version__
from service.api import errors, logs, openapi
from service.api.auth import Authenticator
from service.api.lifespan import lifespan_for
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.middleware import AuditMiddleware, SecurityHeadersMiddleware, ServerErrorGuard
from service.api.request_id import RequestIdMiddleware
from service.api.routers import (
    benchmark,
    docs,
    health,
    models,
    pages,
    render,
    segment,
    volume_files,
    volumes,
)
from service.api.settings import Settings, get_settings

STATIC = Path(__file__).parent / "static"
DESCRIPTION = f"""
Lung and COVID-19 infection segmentation of chest X-ray (CXR) and CT: DICOM, PNG or JPEG in,
lung and infection masks (COCO RLE or PNG) and the infection percentage of lung out.

**{NOT_A_MEDICAL_DEVICE}**

Errors are RFC 7807 `application/problem+json` documents.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; models are loaded by the lifespan, not here."""
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_format)
    app = FastAPI(
        title="lungseg",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan_for(settings),
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
    )
    app.state.settings = settings
    app.state.authenticator = Authenticator.from_settings(settings)
    app.state.metrics = Metrics.create()
    errors.install(app)
    openapi.install(app)
    routers = (
        segment.router,
        render.router,
        volumes.router,
        volume_files.router,
        models.router,
        benchmark.router,
        health.router,
    )
    for router in (*routers, docs.router, pages.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:  # off unless origins are listed
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Location", "Retry-After"],
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(ServerErrorGuard)  # a bug's 500 passes the headers and the audit
    app.add_middleware(AuditMiddleware)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer carries it
    return app
