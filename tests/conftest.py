"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder (data card: its README.md): $LUNGSEG_DATA_DIR or <repo>/../shared/data.

    Tests that use it are skipped when the folder does not exist, unless
    ``LUNGSEG_REQUIRE_DATA=1`` (CI): then they fail, so a missing data set cannot pass as green.
    """
    path = Path(os.environ.get("LUNGSEG_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        reason = f"real data not available: set LUNGSEG_DATA_DIR (looked in {path})"
        if os.environ.get("LUNGSEG_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
