"""``python -m service.api``: run the service with uvicorn on LUNGSEG_HOST:LUNGSEG_PORT."""

from __future__ import annotations

import logging
import warnings

import uvicorn

from service.api.settings import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pydicom's warnings can quote element values (names, dates): keep them out of the log.
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")
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
