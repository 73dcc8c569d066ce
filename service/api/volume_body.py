"""The body of ``POST /v1/volumes``: the files of one volume, or a JSON naming a PACS series.

* ``multipart/form-data``: one or more parts named ``file`` (``-F file=@a.dcm -F file=@b.dcm``,
  or one zip, or one ``.nii`` / ``.nii.gz``), at most ``LUNGSEG_VOLUME_MAX_FILES`` parts and
  ``LUNGSEG_VOLUME_MAX_UPLOAD_BYTES`` together;
* the file itself as the body: ``application/zip``, ``application/gzip`` (``.nii.gz``),
  ``application/dicom``, ``application/octet-stream``;
* ``application/json``: ``{"study_uid": "...", "series_uid": "..."}`` for lungseg to retrieve
  (``LUNGSEG_DICOMWEB_URL`` must be set), at most :data:`MAX_JSON_BYTES`.

Read in memory with the upload guards of :mod:`service.api.uploads` (pace, idle time,
deadline, size while streaming); never written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.api.deps import SettingsDep, upload_limits
from service.api.uploads import RAW_TYPES, media_type, read_body, read_uploads
from service.api.volume_schemas import PacsSeries

JSON = "application/json"
MAX_JSON_BYTES = 16 * 1024
VOLUME_RAW_TYPES = RAW_TYPES | {"application/zip", "application/gzip", "application/x-gzip"}
BINARY = {"type": "string", "format": "binary"}
VOLUME_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the files of one volume (parts named `file`: DICOM files of one "
        "series, a zip of them, or one NIfTI), one such file as the body, or JSON naming a "
        "series in the configured PACS",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "array", "items": BINARY}},
                }
            },
            "application/zip": {"schema": BINARY},
            "application/gzip": {"schema": BINARY},
            "application/dicom": {"schema": BINARY},
            "application/octet-stream": {"schema": BINARY},
            JSON: {"schema": PacsSeries.model_json_schema()},
        },
    }
}
"""The OpenAPI request body of ``POST /v1/volumes`` (``openapi_extra``)."""


@dataclass(repr=False)
class VolumeBody:
    """Either ``files`` (the uploaded files' bytes; the handler may clear the list once it
    has read them, so that the bytes are freed) or ``pacs`` (the series to retrieve)."""

    files: list[bytes] = field(default_factory=list)
    pacs: PacsSeries | None = None

    def __repr__(self) -> str:
        return f"VolumeBody({len(self.files)} file(s), pacs={self.pacs is not None})"


async def volume_body(request: Request, settings: SettingsDep) -> VolumeBody:
    """The body (see the module docstring); 422 for a JSON that does not name a series."""
    kind, _ = media_type(request)
    limits = upload_limits(settings, settings.volume_max_upload_bytes)
    if kind == JSON:
        raw = await read_body(request, limits, MAX_JSON_BYTES)
        try:
            return VolumeBody(pacs=PacsSeries.model_validate_json(raw or b"{}"))
        except ValidationError as err:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in err.errors(include_url=False)]
            ) from None
    uploads = await read_uploads(
        request, limits, max_parts=settings.volume_max_files, raw_types=VOLUME_RAW_TYPES
    )
    return VolumeBody(files=[u.data for u in uploads])


VolumeBodyDep = Annotated[VolumeBody, Depends(volume_body)]
