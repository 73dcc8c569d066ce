"""The OpenAPI document as the service really answers: every error is problem+json.

FastAPI documents its own validation errors (422) as ``application/json`` with its
``HTTPValidationError`` schema; this service answers them, like every other error, as RFC 7807
``application/problem+json`` (``service.api.errors``). The document is rewritten to say so, and
the ``Problem`` schema is added to its components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.errors import PROBLEM_DESCRIPTIONS, PROBLEM_JSON
from service.api.schemas import Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def _problem_response(status: str, described: dict[str, Any]) -> dict[str, Any]:
    description = described.get("description") or PROBLEM_DESCRIPTIONS.get(int(status), "")
    if status == "422":
        description = PROBLEM_DESCRIPTIONS[422]
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with problem+json errors (built once, then cached)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        license_info=app.license_info,
    )
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status, described in responses.items():
                content = described.get("content", {})
                if status == "422" or PROBLEM_JSON in content:
                    responses[status] = _problem_response(status, described)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION:
        components.pop(name, None)
    components["Problem"] = Problem.model_json_schema()
    app.openapi_schema = schema
    return schema


def install(app: FastAPI) -> None:
    """Serve :func:`document` as the app's ``/openapi.json``."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
