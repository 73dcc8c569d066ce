"""COCO run-length encoding, byte for byte as pycocotools' ``mask.encode`` writes it.

A mask is flattened column-major (Fortran order); runs alternate 0s and 1s starting with 0s;
the run lengths are written as pycocotools' compressed string (5-bit groups, offset 48, runs
from the third on stored as the difference to the run two before).
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from service.errors import InvalidInputError


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
    out: list[str] = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


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
