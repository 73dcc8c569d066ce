"""COCO RLE: byte-identical to pycocotools, and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco

from service.encoders import rle
from service.errors import InvalidInputError


def coco_encode(mask: np.ndarray) -> dict:
    encoded = coco.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(encoded["size"]), "counts": encoded["counts"].decode()}


def test_tiny_mask_runs_are_column_major_and_start_with_zeros():
    mask = np.array([[1, 0], [1, 1]], dtype=bool)  # column-major: 1 1 0 1
    assert rle.run_lengths(mask) == [0, 2, 1, 1]
    assert rle.encode(mask) == coco_encode(mask)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (64, 48), (257, 131)])
@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 0.98, 1.0])
def test_encode_matches_pycocotools_and_round_trips(shape, density):
    mask = np.random.default_rng(7).random(shape) < density
    encoded = rle.encode(mask)
    assert encoded == coco_encode(mask)
    np.testing.assert_array_equal(rle.decode(encoded), mask)
    pycoco = coco.decode({"size": encoded["size"], "counts": encoded["counts"].encode()})
    np.testing.assert_array_equal(pycoco.astype(bool), mask)


def test_long_runs_use_negative_differences():
    mask = np.zeros((1000, 1000), dtype=bool)
    mask[100:900, 300:310] = True
    mask[500, 500] = True
    assert rle.encode(mask) == coco_encode(mask)
    np.testing.assert_array_equal(rle.decode(rle.encode(mask)), mask)


def test_decode_rejects_runs_of_the_wrong_total():
    good = rle.encode(np.ones((4, 4), dtype=bool))
    with pytest.raises(InvalidInputError, match="expected 5x4"):
        rle.decode({"size": [5, 4], "counts": good["counts"]})


def test_encode_needs_2d():
    with pytest.raises(InvalidInputError, match="2-D"):
        rle.encode(np.zeros((2, 2, 2), dtype=bool))
