"""Shared helpers of the deploy tests (the container image, its Dockerfiles, the Kubernetes
manifests).

They need tools that are not Python packages (podman, kubectl). Where one is missing the tests
are skipped with the reason, unless ``LUNGSEG_REQUIRE_CONTAINER=1`` (CI): then they fail, so a
missing tool or an image that could not be built cannot pass as green.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from tests import required
from tests.conftest import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"

# Figures measured by the tests, printed at the end of the run (README "Deploy").
FIGURES: dict[str, str] = {}


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it where LUNGSEG_REQUIRE_CONTAINER=1 (CI)."""
    required.unavailable("CONTAINER", reason)


def tool(name: str) -> str:
    """The path of a command: on PATH or beside this Python (the venv's bin/)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        unavailable(f"{name} not found")
    assert found is not None
    return found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("lungseg deploy figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
