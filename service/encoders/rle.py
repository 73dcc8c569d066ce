"""COCO run-length encoding, byte for byte as pycocotools' ``mask.encode`` writes it, and the
``rle`` output format: every frame's lung and infection masks as COCO RLE.

A mask is flattened column-major (Fortran order); runs alternate 0s and 1s starting with 0s;
the run lengths are written as pycocotools' compressed string (5-bit groups, offset 48, runs
from the third on stored as the difference to the run two before).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from service.errors import InvalidInputError
from service.pipeline.result import EncodedMasks, Segmentation

FORMAT = "rle"


class CocoRle(TypedDict):
    """``{"size": [height, width], "counts": "<compressed string>"}``."""

    size: list[int]
    counts: str


def run_lengths(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a 2-D mask, starting with a (possibly empty) run of zeros."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def _encode_counts(counts: list[int]) -> str:
    """pycocotools' compressed counts, vectorised: every run's 5-bit groups at once."""
    if not counts:
        return ""
    x = np.asarray(counts, dtype=np.int64)
    x[3:] -= x[1:-2].copy()  # from the fourth run on: the difference to the run two before
    groups, alive = [], np.ones(len(x), dtype=bool)
    while alive.any():
        c = x & 0x1F
        x = x >> 5  # arithmetic shift, as in pycocotools
        more = np.where(c & 0x10, x != -1, x != 0)
        groups.append(np.where(alive, (c | np.where(more, 0x20, 0)) + 48, 0))
        alive &= more
    chars = np.stack(groups, axis=1).astype(np.uint8)  # (runs, groups); 0 = no character
    return chars[chars > 0].tobytes().decode("ascii")


def _decode_counts(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                raise InvalidInputError("RLE counts string ends in the middle of a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> CocoRle:
    """Encode a 2-D bool/0-1 mask ``(H, W)`` as COCO RLE (pycocotools-compatible)."""
    if mask.ndim != 2:
        raise InvalidInputError(f"RLE encodes 2-D masks, got shape {mask.shape}")
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": _encode_counts(run_lengths(mask))}


def decode(rle: CocoRle) -> np.ndarray:
    """Decode COCO RLE to a bool ``(H, W)`` mask; malformed input raises InvalidInputError."""
    height, width = (int(v) for v in rle["size"])
    counts = _decode_counts(rle["counts"])
    if any(c < 0 for c in counts) or sum(counts) != height * width:
        raise InvalidInputError(
            f"RLE runs sum to {sum(counts)} pixels, expected {height}x{width}={height * width}"
        )
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def encode_result(result: Segmentation) -> EncodedMasks:
    """Every frame's masks as ``{"lung": CocoRle, "infection": CocoRle}``."""
    frames = [
        {"lung": encode(f.masks.lung), "infection": encode(f.masks.infection)}
        for f in result.frames
    ]
    return EncodedMasks(FORMAT, frames)
