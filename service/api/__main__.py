"""``python -m service.api``: run the service with uvicorn on LUNGSEG_HOST:LUNGSEG_PORT."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from service.api import logs
from service.api.auth import AuthConfigError, Authenticator
from service.api.metrics import MULTIPROC_ENV
from service.api.settings import get_settings

log = logging.getLogger("lungseg")


@contextmanager
def metrics_folder(workers: int) -> Iterator[Path | None]:
    """The folder the workers share their Prometheus metrics in.

    ``PROMETHEUS_MULTIPROC_DIR`` when set (emptied of a previous run's files first), else a
    fresh temporary folder when there are several workers (removed afterwards), else none.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        yield folder
        return
    if workers <= 1:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="lungseg-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_format)
    try:  # before binding: no service off loopback without authentication (README, Security)
        Authenticator.from_settings(settings)
    except AuthConfigError as err:
        log.critical("refusing to start: %s", err)
        raise SystemExit(2) from None
    with metrics_folder(settings.workers) as folder:
        if folder is not None:
            log.info(
                "Prometheus metrics of the %d workers are shared in %s", settings.workers, folder
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
