"""Corrupted uploads: every failure is a LungsegError (an HTTP 4xx), never anything else (500).

Real fixture files with random bytes overwritten, cut short or replaced by noise, through the
decoder and the whole segmentation path; a fixed seed keeps the run the same every time.
"""

from __future__ import annotations

import random

import pytest

from service.api.routers.segment import segment_response
from service.encoders import encoder_for
from service.errors import LungsegError
from service.imaging import decode
from service.models.segmenter import Segmenter, SegmenterConfig
from tests.conftest import FIXTURES_DIR, REPO_ROOT

FIXTURES = FIXTURES_DIR
ROOT = REPO_ROOT


def _corrupt(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    kind = rng.random()
    if kind < 0.5:  # a few bytes overwritten
        for _ in range(rng.randint(1, 20)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind < 0.8:  # cut short
        out = out[: rng.randrange(1, len(out))]
    else:  # a run of noise
        start = rng.randrange(len(out))
        end = min(len(out), start + rng.randint(1, 2000))
        out[start:end] = bytes(rng.randrange(256) for _ in range(end - start))
    return bytes(out)


@pytest.fixture(scope="module")
def originals() -> list[bytes]:
    return [(FIXTURES / name).read_bytes() for name in ("CT_small.dcm", "cxr_covid_1902.png")]


def test_corrupted_files_fail_only_with_domain_errors(originals: list[bytes]) -> None:
    rng = random.Random(0)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(400):
        try:
            decode(_corrupt(rng.choice(originals), rng), threads=2)
            outcomes["decoded"] += 1
        except LungsegError:
            outcomes["refused"] += 1
    assert outcomes["decoded"] + outcomes["refused"] == 400
    assert outcomes["decoded"] > 50 and outcomes["refused"] > 50  # both paths were exercised


def test_corrupted_files_that_decode_segment_and_encode(originals: list[bytes]) -> None:
    segmenter = Segmenter(SegmenterConfig(ROOT / "models", providers="cpu", intra_op_threads=1))
    rng = random.Random(1)
    segmented = 0
    for _ in range(60):
        data = _corrupt(rng.choice(originals), rng)
        model = rng.choice(["unet", "cnn", "threshold"])
        try:
            encoder = encoder_for(rng.choice(["rle", "png"]))
            result = segmenter.segment_bytes(data, "auto", model, encoder)
        except LungsegError:
            continue
        segment_response(result).model_dump_json()
        segmented += 1
    assert segmented > 10
