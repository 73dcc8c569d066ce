"""Connected components of a 3-D mask, 6-connected, one slice at a time.

Each slice is labelled with OpenCV (4-connectivity, Spaghetti algorithm) inside the box that
holds the mask on every slice; components of neighbouring slices that share a voxel (the voxel
directly above or below) are merged with a union-find. Only a small table per slice is kept
(slice label -> 3-D component), never a label volume: a slice's labels are computed again when
they are needed (:func:`slice_ids`), so memory stays that of a slice whatever the slice count.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_FEW = 4
"""Components on a slice up to which :meth:`Histograms.add` counts each one with a mask."""
_PAIR_TABLE_LIMIT = 1 << 22
"""Largest (labels above x labels below) count for which overlaps are counted in a table."""

Box = tuple[slice, slice]


@dataclass(frozen=True, eq=False)
class Components3D:
    """The 3-D components of a mask.

    Attributes:
        ids: per slice, int64 table: the slice's label -> 3-D component id (0 is the
            background; an empty slice has the table ``[0]``).
        sizes: voxels of each component id (index 0, the background, is 0).
        box: ``(rows, columns)`` slices of the box holding the mask on every slice; labels
            and ids of a slice are those of ``plane[box]``.
    """

    ids: list[np.ndarray]
    sizes: np.ndarray
    box: Box

    @property
    def count(self) -> int:
        """Components, background not counted."""
        return len(self.sizes) - 1

    def largest(self, keep: int, min_fraction: float) -> np.ndarray:
        """Ids of the ``keep`` largest components, without those under ``min_fraction`` of the
        largest (larger first; empty for an empty mask)."""
        if self.count == 0:
            return np.zeros(0, np.int64)
        order = np.argsort(self.sizes[1:], kind="stable")[::-1][:keep] + 1
        kept: np.ndarray = order[self.sizes[order] >= min_fraction * self.sizes[order[0]]]
        return kept


def _label(plane: np.ndarray) -> tuple[int, np.ndarray]:
    """4-connected labels of a bool plane (the same labels every time it is asked)."""
    image = plane.view(np.uint8) if plane.flags.c_contiguous else plane.astype(np.uint8)
    count, labels = cv2.connectedComponentsWithAlgorithm(image, 4, cv2.CV_32S, cv2.CCL_SPAGHETTI)
    return int(count), labels


class _UnionFind:
    def __init__(self) -> None:
        self.parent = [0]

    def add(self, n: int) -> int:
        """Add ``n`` new sets; returns the id before the first of them."""
        base = len(self.parent) - 1
        self.parent.extend(range(base + 1, base + 1 + n))
        return base

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _overlaps(above: np.ndarray, below: np.ndarray, n_above: int, n_below: int) -> np.ndarray:
    """``(k, 2)`` distinct pairs of labels (above, below) that share a voxel position."""
    both = (above > 0) & (below > 0)
    if not both.any():
        return np.zeros((0, 2), np.int64)
    codes = above[both].astype(np.int64) * n_below + below[both]
    if n_above * n_below <= _PAIR_TABLE_LIMIT:
        hits = np.flatnonzero(np.bincount(codes, minlength=n_above * n_below))
    else:
        hits = np.unique(codes)
    return np.stack(np.divmod(hits, n_below), axis=1)


def _box(volume: np.ndarray, level: int) -> Box:
    """The rows and columns holding ``volume >= level`` on any slice (empty: ``0:0``)."""
    rows0, cols0, rows1, cols1 = volume.shape[1], volume.shape[2], 0, 0
    for index in range(volume.shape[0]):
        x, y, w, h = cv2.boundingRect((volume[index] >= level).view(np.uint8))
        if w and h:
            rows0, cols0 = min(rows0, y), min(cols0, x)
            rows1, cols1 = max(rows1, y + h), max(cols1, x + w)
    if rows1 == 0:
        return slice(0, 0), slice(0, 0)
    return slice(rows0, rows1), slice(cols0, cols1)


def label_3d(volume: np.ndarray, level: int = 1) -> Components3D:
    """6-connected components of the mask ``volume >= level`` (``volume``: a bool or integer
    ``(slices, rows, columns)`` array, compared one slice at a time)."""
    box = _box(volume, level)
    sets = _UnionFind()
    bases: list[tuple[int, int]] = []  # (global id before the slice's first label, count)
    areas: list[np.ndarray] = [np.zeros(1, np.int64)]
    previous: tuple[np.ndarray, int, int] | None = None
    for index in range(volume.shape[0]):
        plane = volume[index][box] >= level
        if not plane.any():
            bases.append((0, 1))
            previous = None
            continue
        count, labels = _label(plane)
        base = sets.add(count - 1)
        bases.append((base, count))
        areas.append(np.bincount(labels.ravel(), minlength=count)[1:])
        if previous is not None:
            above, above_base, above_count = previous
            for a, b in _overlaps(above, labels, above_count, count).tolist():
                sets.union(above_base + a, base + b)
        previous = (labels, base, count)
    roots = np.array([sets.find(i) for i in range(len(sets.parent))], dtype=np.int64)
    unique, compact = np.unique(roots, return_inverse=True)  # root 0 (background) -> 0
    sizes = np.bincount(compact, weights=np.concatenate(areas), minlength=len(unique))
    sizes[0] = 0
    ids = [
        np.concatenate([[0], compact[base + 1 : base + count]]) if count > 1 else np.zeros(1, int)
        for base, count in bases
    ]
    return Components3D(ids=ids, sizes=sizes.astype(np.int64), box=box)


def slice_ids(found: Components3D, plane: np.ndarray, index: int) -> np.ndarray:
    """int64 3-D component id of every voxel of ``plane[found.box]``: ``plane`` is slice
    ``index`` of the mask given to :func:`label_3d`, as a bool array."""
    table = found.ids[index]
    cropped = plane[found.box]
    if len(table) == 1:
        return np.zeros(cropped.shape, np.int64)
    ids: np.ndarray = table[_label(cropped)[1]]
    return ids


@dataclass(frozen=True, eq=False)
class Histograms:
    """Where each 3-D component's voxels lie, in box coordinates (what left / right needs).

    Row ``i`` of each array is component ``i``; row 0 holds the mask's voxels of no component
    (holes filled after the components were found).

    Attributes:
        box: the ``(rows, columns)`` box of the arrays' columns and rows.
        lung_columns, infection_columns: ``(n + 1, box width)`` voxels per column.
        lung_rows: ``(n + 1, box height)`` voxels per row.
        slice_sums: ``(n + 1,)`` sum of the slice indices of the voxels.
    """

    box: Box
    lung_columns: np.ndarray
    infection_columns: np.ndarray
    lung_rows: np.ndarray
    slice_sums: np.ndarray

    @classmethod
    def empty(cls, components: int, box: Box) -> Histograms:
        height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
        n = components + 1
        return cls(
            box,
            np.zeros((n, width), np.int64),
            np.zeros((n, width), np.int64),
            np.zeros((n, height), np.int64),
            np.zeros(n),
        )

    def add(
        self,
        index: int,
        ids: np.ndarray,
        lung: np.ndarray,
        infection: np.ndarray,
        present: np.ndarray | None = None,
    ) -> None:
        """Count slice ``index``: ``ids`` (component of each box voxel, 0 for none), ``lung``
        and ``infection`` bool masks of the box; ``present``: the ids on this slice (faster
        when they are few)."""
        n, width = self.lung_columns.shape
        height = self.lung_rows.shape[1]
        if present is not None and len(present) <= _FEW:
            for i, mask in [(0, lung & (ids == 0)), *((int(i), ids == i) for i in present)]:
                columns = _sums(mask, 0)
                self.lung_columns[i] += columns
                self.infection_columns[i] += _sums(mask & infection, 0)
                self.lung_rows[i] += _sums(mask, 1)
                self.slice_sums[i] += float(columns.sum()) * index
            return
        by_column = ids * width + np.arange(width)
        columns = _histogram(by_column, lung, n * width).reshape(n, width)
        self.lung_columns[...] += columns
        self.infection_columns[...] += _histogram(by_column, infection, n * width).reshape(n, width)
        by_row = ids * height + np.arange(height)[:, None]
        self.lung_rows[...] += _histogram(by_row, lung, n * height).reshape(n, height)
        self.slice_sums[...] += columns.sum(axis=1) * float(index)


def _sums(mask: np.ndarray, axis: int) -> np.ndarray:
    """True values of a contiguous bool mask per column (``axis`` 0) or per row (1)."""
    summed = cv2.reduce(mask.view(np.uint8), axis, cv2.REDUCE_SUM, dtype=cv2.CV_32S)
    return np.asarray(summed).ravel()


def _histogram(codes: np.ndarray, where: np.ndarray, size: int) -> np.ndarray:
    """``bincount`` of ``codes`` where ``where`` holds, of length ``size``."""
    counted: np.ndarray = np.bincount(np.where(where, codes, size).ravel(), minlength=size + 1)
    return counted[:size]


def slice_labels(
    found: Components3D, plane: np.ndarray, index: int, kept: np.ndarray
) -> np.ndarray:
    """Bool ``plane[found.box]``-shaped: the voxels of slice ``index`` in components ``kept``."""
    return kept_ids(found, plane, index, kept) > 0


def kept_ids(found: Components3D, plane: np.ndarray, index: int, kept: np.ndarray) -> np.ndarray:
    """int64 ``plane[found.box]``-shaped: the 3-D component id of the voxels of slice ``index``
    in components ``kept``, 0 elsewhere."""
    table = found.ids[index]
    cropped = plane[found.box]
    if len(table) == 1 or len(kept) == 0:
        return np.zeros(cropped.shape, np.int64)
    wanted = np.where(np.isin(table, kept), table, 0)
    wanted[0] = 0
    ids: np.ndarray = wanted[_label(cropped)[1]]
    return ids
