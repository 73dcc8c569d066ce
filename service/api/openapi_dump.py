"""``python -m service.api.openapi_dump <path>``: write the app's OpenAPI document."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from service.api.main import create_app
from service.api.settings import Settings


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app with default settings (independent of the environment)."""
    return create_app(Settings(_env_file=None)).openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "openapi/openapi.json")
    target.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
