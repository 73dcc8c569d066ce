"""The real PACS of the DICOMweb tests: Orthanc with its DICOMweb plugin (tests/pacs.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pacs import OrthancServer, OrthancUnavailable


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
        if os.environ.get("LUNGSEG_REQUIRE_PACS") == "1":
            pytest.fail(f"Orthanc required (LUNGSEG_REQUIRE_PACS=1): {err}")
        pytest.skip(f"Orthanc not available: {err}")
    try:
        yield server
    finally:
        server.stop()
