"""The ``rle`` output format of a volume: per-slice COCO RLE masks in a JSON document.

The slices are those of the input, in the input's order along its axial axis
(``input_slice_axis``: 0 for a DICOM series, sorted along the slice normal; for NIfTI the
stored axis closest to head-feet), each as a 2-D mask of the input's two other axes in their
stored order (DICOM: Rows x Columns in stored pixel order), encoded with
:func:`service.encoders.rle.encode` (pycocotools-compatible, column-major). ``lung`` includes
the infection, as in the 2-D ``rle`` format.

Document::

    {"format": "lungseg-slices-rle", "version": 1,
     "labels": {"0": "background", "1": "lung", "2": "infection"},
     "layout": "input", "shape": [input shape], "slice_axis": 0,
     "slices": [{"index": 0, "canonical_index": 63, "upload_index": 12, "frame": 0,
                 "lung": {"size": [512, 512], "counts": "..."}, "infection": {...}}, ...]}

``upload_index`` (the slice's file position in the upload, 0-based) and ``frame`` (its 0-based
frame in that file) are given for DICOM only.

:func:`encode_canonical` writes the same document in the canonical layout instead (``"layout":
"canonical"``: slices inferior -> superior, rows anterior -> posterior, columns patient right
-> left, whatever the input's orientation), each slice with its ``input_index``: what a viewer
drawing the volume in radiological orientation overlays.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from service.encoders.rle import encode
from service.pipeline.result import EncodedFile
from service.pipeline.volume import INFECTION, LUNG, VolumeSegmentation

FORMAT = "rle"
MEDIA_TYPE = "application/json"
FILENAME = "slices.json"
DOCUMENT = "lungseg-slices-rle"


def slice_masks(result: VolumeSegmentation) -> list[dict[str, Any]]:
    """One entry per input slice, in the input's slice order (see the module docstring)."""
    labels = result.labels_in_input()
    axis = result.input_slice_axis
    canonical = {s.input_index: s.index for s in result.slices}
    layout = result.layout
    out = []
    for index in range(labels.shape[axis]):
        plane = np.take(labels, index, axis=axis)
        entry: dict[str, Any] = {"index": index, "canonical_index": canonical[index]}
        if layout.file_index:
            entry["upload_index"] = layout.file_index[index]
            entry["frame"] = layout.frame_index[index]
        entry["lung"] = encode(plane >= LUNG)
        entry["infection"] = encode(plane == INFECTION)
        out.append(entry)
    return out


def slices_document(result: VolumeSegmentation) -> dict[str, Any]:
    """The whole JSON document as a dict."""
    return {
        "format": DOCUMENT,
        "version": 1,
        "labels": {"0": "background", "1": "lung", "2": "infection"},
        "layout": "input",
        "shape": list(result.layout.shape),
        "slice_axis": result.input_slice_axis,
        "slices": slice_masks(result),
    }


def encode_volume(result: VolumeSegmentation) -> EncodedFile:
    """The per-slice RLE document as a JSON file (``application/json``)."""
    content = json.dumps(slices_document(result), separators=(",", ":")).encode("utf-8")
    return EncodedFile(FORMAT, MEDIA_TYPE, content, FILENAME)


def canonical_document(result: VolumeSegmentation) -> dict[str, Any]:
    """The document in the canonical layout (see the module docstring)."""
    labels = result.labels
    slices = [
        {
            "index": m.index,
            "input_index": m.input_index,
            "lung": encode(labels[m.index] >= LUNG),
            "infection": encode(labels[m.index] == INFECTION),
        }
        for m in result.slices
    ]
    return {
        "format": DOCUMENT,
        "version": 1,
        "layout": "canonical",
        "labels": {"0": "background", "1": "lung", "2": "infection"},
        "shape": [int(n) for n in labels.shape],
        "slice_axis": 0,
        "slices": slices,
    }


def encode_canonical(result: VolumeSegmentation) -> EncodedFile:
    """The canonical per-slice RLE document as a JSON file (``application/json``)."""
    content = json.dumps(canonical_document(result), separators=(",", ":")).encode("utf-8")
    return EncodedFile(FORMAT, MEDIA_TYPE, content, "slices-canonical.json")
