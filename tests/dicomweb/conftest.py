"""The real PACS of the DICOMweb tests: Orthanc with its DICOMweb plugin (tests/pacs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pacs import OrthancServer, OrthancUnavailable
from tests.required import unavailable


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    """An Orthanc of this test session (a config in a temporary folder, HTTP on a free
    loopback port, DICOM off, authentication on), stopped by its pid and removed at the end.

    Tests that use it are skipped without Orthanc (``apt-get install orthanc
    orthanc-dicomweb``), unless ``LUNGSEG_REQUIRE_PACS=1`` (CI): then they fail.
    """
    try:
        server = OrthancServer().start()
    except OrthancUnavailable as err:
        unavailable("PACS", f"Orthanc not available: {err}")
    try:
        yield server
    finally:
        server.stop()
