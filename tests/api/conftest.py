"""Fixtures of the HTTP tests: an app per test with its own settings and results database."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pycocotools import mask as coco_mask

from service.api.main import create_app
from service.api.settings import REPO_ROOT, Settings


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


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a response RLE with pycocotools itself (the reference implementation)."""
    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """Zip a folder in memory (entries under ``prefix``)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + str(path.relative_to(folder)))
    return buffer.getvalue()
