"""Logging of the service: plain text or JSON lines, library warnings through ``logging``.

Never logged: patient identifiers, file names, UIDs, pixel data. Library messages that may
quote element values are kept out: pydicom's and highdicom's warnings and log records (they
can hold UIDs, names, dates) are dropped, httpx's request lines (URLs) are not logged; other
libraries' warnings (numpy, OpenCV) are captured into the ``py.warnings`` logger at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime
from typing import Any

FIELDS = (
    "request_id",
    "client",
    "auth",
    "method",
    "route",
    "status",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "error",
)
"""Structured fields a record may carry (``extra=``): the audit line's, never a value of the
request's content."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message and the
    structured fields present on the record."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str = "info", fmt: str = "text") -> None:
    """Set up the root logger once per process (each uvicorn worker calls it); ``fmt`` is
    ``text`` or ``json``."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "lungseg", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.lungseg = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    # pydicom's and highdicom's warnings and records can quote element values (UIDs, names,
    # dates); httpx's INFO lines quote request URLs (DICOMweb URLs hold UIDs).
    for module in ("pydicom", "highdicom"):
        warnings.filterwarnings("ignore", module=rf"{module}(\..*)?")
        logging.getLogger(module).setLevel(logging.CRITICAL)
        logging.getLogger(module).propagate = False
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
