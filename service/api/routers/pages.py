"""The browser pages: ``GET /dashboard`` (model comparison), ``GET /viewer`` (overlays) and
``GET /viewer/volume`` (a CT volume, slice by slice).

Static HTML from ``service/api/static/pages`` with the disclaimer, the version and the root
path filled in; their scripts call the public API only. No asset comes from outside the app.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from service import NOT_A_MEDICAL_DEVICE, __version__

router = APIRouter(include_in_schema=False)
PAGES = Path(__file__).resolve().parents[1] / "static" / "pages"


@lru_cache
def _template(name: str) -> str:
    return (PAGES / f"{name}.html").read_text(encoding="utf-8")


def render_page(name: str, root: str) -> HTMLResponse:
    """Fill the page's ``{{root}}``, ``{{disclaimer}}`` and ``{{version}}`` placeholders."""
    text = (
        _template(name)
        .replace("{{root}}", html.escape(root, quote=True))
        .replace("{{disclaimer}}", html.escape(NOT_A_MEDICAL_DEVICE))
        .replace("{{version}}", html.escape(__version__))
    )
    return HTMLResponse(text)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> HTMLResponse:
    """Comparison of the models from the stored benchmark results."""
    return render_page("dashboard", request.scope.get("root_path", ""))


@router.get("/viewer", response_class=HTMLResponse)
def viewer(request: Request) -> HTMLResponse:
    """Upload an image and see the lung and infection masks over it."""
    return render_page("viewer", request.scope.get("root_path", ""))


@router.get("/viewer/volume", response_class=HTMLResponse)
def volume_viewer(request: Request) -> HTMLResponse:
    """Upload a CT volume, follow its job, then scroll its slices with the overlays."""
    return render_page("volume", request.scope.get("root_path", ""))
