"""A volume's slices for display, kept after its voxels are gone: one byte per voxel, bounded.

The viewer scrolls a segmented volume slice by slice under two window presets (lung -600/1500,
mediastinum 40/400) long after the job dropped the voxels (jobs keep labels and measures
only). So that both windows can be drawn from one stored copy, the canonical HU voxels are
coded into one byte with a piecewise-linear scale that gives half the codes to the
soft-tissue range: codes 0..127 for -1350..-160 HU (9.4 HU a step; the lung window's lower
part), 128..255 for -160..240 HU (3.1 HU a step: the mediastinum window, 128 levels); values
beyond are clipped. A window is applied at request time through a 256-entry table.

Size bound: slices are shrunk in-plane (area averaging, one integer factor for the whole
volume) until the volume holds at most :data:`MAX_VOXELS` voxels, and each slice is stored as
a PNG of its codes (deflate). The blob::

    b"LSPV" | uint32 slices | uint32 rows | uint32 columns | uint64 offset * (slices + 1) | PNGs

(little-endian; slice ``k``'s PNG is ``blob[offset[k]:offset[k + 1]]``, in canonical order:
slices inferior -> superior, rows anterior -> posterior, columns patient right -> left).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from service.encoders.png import png_bytes
from service.pipeline.params import CtWindow

MAGIC = b"LSPV"
MEDIA_TYPE = "application/octet-stream"
MAX_VOXELS = 20_000_000
"""Most voxels of a preview: 64 slices of 512 x 512 kept (~10 MiB), 300 shrunk to 256 x 256."""
HU_KNOTS = (-1350.0, -160.0, 240.0)
CODE_KNOTS = (0.0, 127.0, 255.0)
WINDOWS = {
    "lung": CtWindow(level=-600.0, width=1500.0),
    "mediastinum": CtWindow(level=40.0, width=400.0),
}
_HEADER = struct.Struct("<4sIII")


@dataclass(frozen=True)
class PreviewInfo:
    """The size of the preview's slices (rows, columns) and how many there are."""

    slices: int
    rows: int
    columns: int


def factor_for(shape: tuple[int, int, int], max_voxels: int = MAX_VOXELS) -> int:
    """The smallest in-plane shrink factor that brings ``shape`` within ``max_voxels``."""
    slices, rows, columns = shape
    factor = 1
    while slices * -(-rows // factor) * -(-columns // factor) > max_voxels and factor < max(
        rows, columns
    ):
        factor += 1
    return factor


def codes(hu: np.ndarray) -> np.ndarray:
    """HU (any shape) -> uint8 display codes (see the module docstring)."""
    coded = np.interp(hu, HU_KNOTS, CODE_KNOTS)
    return np.round(coded).astype(np.uint8)


def encode_preview(voxels: np.ndarray, max_voxels: int = MAX_VOXELS) -> tuple[bytes, PreviewInfo]:
    """The preview blob of canonical HU ``voxels`` ``(slices, rows, columns)``."""
    slices, rows, columns = (int(n) for n in voxels.shape)
    factor = factor_for((slices, rows, columns), max_voxels)
    size = (-(-columns // factor), -(-rows // factor))  # OpenCV: (width, height)
    pngs = []
    for index in range(slices):
        plane = voxels[index]
        if factor > 1:
            plane = cv2.resize(np.asarray(plane, np.float32), size, interpolation=cv2.INTER_AREA)
        pngs.append(png_bytes(codes(plane)))
    info = PreviewInfo(slices, size[1], size[0])
    table = np.zeros(slices + 1, np.uint64)
    start = _HEADER.size + table.nbytes
    table[1:] = np.cumsum([len(p) for p in pngs])
    table += start
    head = _HEADER.pack(MAGIC, slices, info.rows, info.columns)
    return head + table.astype("<u8").tobytes() + b"".join(pngs), info


def read_info(blob: bytes) -> PreviewInfo:
    magic, slices, rows, columns = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ValueError("not a lungseg preview")
    return PreviewInfo(slices, rows, columns)


def window_table(window: CtWindow) -> np.ndarray:
    """The 256 gray levels of the codes through ``window``."""
    hu = np.interp(np.arange(256, dtype=np.float64), CODE_KNOTS, HU_KNOTS)
    shown = np.clip((hu - window.low) / window.width, 0.0, 1.0)
    return np.round(shown * 255.0).astype(np.uint8)


def render_slice(blob: bytes, index: int, window: CtWindow) -> bytes:
    """Slice ``index`` (canonical) of a preview as an 8-bit PNG through ``window``.

    Raises:
        IndexError: no such slice. ValueError: not a preview blob.
    """
    info = read_info(blob)
    if not 0 <= index < info.slices:
        raise IndexError(index)
    offsets = np.frombuffer(blob, "<u8", info.slices + 1, _HEADER.size)
    start, end = int(offsets[index]), int(offsets[index + 1])
    coded = cv2.imdecode(np.frombuffer(blob[start:end], np.uint8), cv2.IMREAD_UNCHANGED)
    if coded is None:
        raise ValueError("the preview's slice is corrupt")
    return png_bytes(window_table(window)[coded])
