"""Skip where a real component is missing, fail where CI requires it.

A test that needs PostgreSQL, Orthanc, podman, haproxy, Chromium or the real data is skipped with
the reason on a developer's machine that lacks it; CI sets ``LUNGSEG_REQUIRE_<WHAT>=1`` so the
same test fails instead, and a missing component cannot pass as green.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def required(what: str) -> bool:
    """Whether ``LUNGSEG_REQUIRE_<WHAT>=1`` is set (``what``: DATA, POSTGRES, PACS, ...)."""
    return os.environ.get(f"LUNGSEG_REQUIRE_{what}") == "1"


def unavailable(what: str, reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it where ``LUNGSEG_REQUIRE_<WHAT>=1``."""
    if required(what):
        pytest.fail(f"{reason} (LUNGSEG_REQUIRE_{what}=1)")
    pytest.skip(reason)
