"""Fixtures of the security tests: apps with an API keys file, without running the lifespan
unless a test needs the models (``with TestClient(app)``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from service.api.auth import new_key
from service.api.main import create_app
from service.api.settings import REPO_ROOT, Settings

CLIENTS = {
    "pacs-bridge": "segment",
    "research": "benchmark",
    "prometheus": "metrics",
    "ops": "admin",
    "viewer-app": "segment,benchmark",
}


@dataclass
class KeysFile:
    path: Path
    keys: dict[str, str]  # client name -> its key

    def bearer(self, client: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[client]}"}


@pytest.fixture
def keys_file(tmp_path: Path) -> KeysFile:
    """A keys file of CLIENTS with comments, blank lines, trailing whitespace and CRLF."""
    keys: dict[str, str] = {}
    lines = ["# lungseg API keys: <client> <sha256-hex> <scopes>", ""]
    for i, (name, scopes) in enumerate(CLIENTS.items()):
        key, line = new_key(name, scopes)
        keys[name] = key
        lines.append(line + ("   \t" if i % 2 else "  # a comment after the entry"))
        lines.append("   ")
    path = tmp_path / "api-keys"
    path.write_bytes("\r\n".join(lines).encode())
    return KeysFile(path, keys)


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., FastAPI]:
    """Factory: ``make_app(**settings)`` -> an app (loopback bind unless ``host`` is given)."""

    def make(**overrides: object) -> FastAPI:
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "models_dir": REPO_ROOT / "models",
            "database_url": f"sqlite:///{tmp_path / 'runs.db'}",
        }
        values.update(overrides)
        return create_app(Settings(**values))  # type: ignore[arg-type]

    return make
