"""Fixtures of the topology test: replicas of the service behind a real HAProxy, sharing a real
PostgreSQL.

It needs Debian's ``haproxy`` (``make haproxy-deps``) and PostgreSQL server (``make
postgres-deps``). Where one is missing the test is skipped with the reason, unless
``LUNGSEG_REQUIRE_TOPOLOGY=1`` (CI): then it fails, so a missing tool cannot pass as green.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import pytest

from tests import required
from tests.haproxy import HaproxyUnavailable, find_haproxy
from tests.postgres import PostgresServer, PostgresUnavailable

# Figures measured by the test, printed at the end of the run (README "Deploy").
FIGURES: dict[str, str] = {}


def unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it where LUNGSEG_REQUIRE_TOPOLOGY=1 (CI)."""
    required.unavailable("TOPOLOGY", reason)


@pytest.fixture(scope="module")
def haproxy_binary() -> str:
    try:
        return find_haproxy()
    except HaproxyUnavailable as err:
        unavailable(str(err))
        raise


@pytest.fixture(scope="module")
def shared_database() -> Iterator[str]:
    """The URL of a fresh database on a PostgreSQL server of this module's own (the replicas
    share it), dropped and the server removed afterwards."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        unavailable(f"PostgreSQL not available: {err}")
        raise
    try:
        name = server.create_database()
        yield server.url(name)
    finally:
        server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("lungseg topology figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
