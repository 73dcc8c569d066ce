"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.main import create_app
from service.api.settings import Settings
from tests.postgres import PostgresServer, PostgresUnavailable
from tests.required import unavailable

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
        unavailable("DATA", f"real data not available: set LUNGSEG_DATA_DIR (looked in {path})")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test session (tests/postgres.py: initdb into a temporary
    folder, a Unix socket only, fsync off), stopped and removed at the end.

    Tests that use it are skipped when PostgreSQL or psycopg is missing (``make postgres-deps``),
    unless ``LUNGSEG_REQUIRE_POSTGRES=1`` (CI): then they fail.
    """
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as err:
        unavailable("POSTGRES", f"PostgreSQL not available: {err}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database of its own, dropped after the test."""
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty job store, once on an SQLite file and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """Factory: ``make_client(**settings)`` -> a started TestClient (lifespan run)."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        values: dict[str, object] = {
            "models_dir": REPO_ROOT / "models",
            "database_url": f"sqlite:///{tmp_path / 'runs.db'}",
        }
        values.update(overrides)
        client = TestClient(create_app(Settings(**values)))  # type: ignore[arg-type]
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
