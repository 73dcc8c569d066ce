"""The shipped models give exactly the recorded masks on real files (``tests/golden.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.models.segmenter import Segmenter, SegmenterConfig
from tests.golden import GOLDEN, REPO_ROOT, record


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterConfig(REPO_ROOT / "models", providers="cpu"))


def test_masks_match_the_recorded_ones(segmenter: Segmenter, data_dir: Path) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = record(segmenter, data_dir)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], name
