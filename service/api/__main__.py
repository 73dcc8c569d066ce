"""``python -m service.api``: run the service with uvicorn on LUNGSEG_HOST:LUNGSEG_PORT."""

from __future__ import annotations

import logging

import uvicorn

from service.api.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(
        "service.api.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
