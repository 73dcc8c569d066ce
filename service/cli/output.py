"""What ``lungseg segment`` writes: output files named by the input's number, a measures JSON
per input, the progress bar on stderr and the summary table on stdout.

Files of input ``N`` (``NNNN``, 1-based, in the order given; never a name from the input):

* volumes: ``NNNN.nii.gz`` (``--format nifti``, :mod:`service.encoders.nifti`) or
  ``NNNN.rle.json`` (``--format rle``, :mod:`service.encoders.slices`);
* images: ``NNNN.rle.json`` (the ``rle`` format of ``/v1/segment``) or, with ``--format png``,
  ``NNNN_lung.png`` and ``NNNN_infection.png`` (0 / 255; ``NNNN_fFFF_...`` per frame of a
  multi-frame file);
* always ``NNNN.json``: the measures (volumes in mL, left / right, per-slice areas, warnings,
  model, timings) without masks.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from service.encoders import nifti, png, rle, slices
from service.pipeline.result import EncodedFile, FrameResult, Segmentation
from service.pipeline.volume import VolumeSegmentation

BAR_WIDTH = 30


class Progress:
    """A one-line progress bar on ``stream`` (stderr), drawn only when it is a terminal."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.shown = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.shown:
            return
        filled = BAR_WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} slices")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def write_volume(
    result: VolumeSegmentation, out: Path, stem: str, fmt: str, seg: EncodedFile | None = None
) -> list[str]:
    """Write the volume's mask file (``seg``: its DICOM SEG, made by the caller while the
    volume's headers were at hand) and measures; returns the names written."""
    if fmt == "seg" and seg is not None:
        encoded, name = seg, f"{stem}.seg.dcm"
    elif fmt == "nifti":
        encoded, name = nifti.encode_volume(result), f"{stem}.nii.gz"
    else:
        encoded, name = slices.encode_volume(result), f"{stem}.rle.json"
    (out / name).write_bytes(encoded.content)
    _write_json(out / f"{stem}.json", volume_measures(result))
    return [name, f"{stem}.json"]


def write_image(result: Segmentation, out: Path, stem: str, fmt: str) -> list[str]:
    """Write the image's masks (RLE JSON or PNG files) and measures; returns the names."""
    names = []
    if fmt == "png":
        for index, frame in enumerate(result.frames):
            prefix = stem if len(result.frames) == 1 else f"{stem}_f{index:03d}"
            for label, mask in (("lung", frame.masks.lung), ("infection", frame.masks.infection)):
                name = f"{prefix}_{label}.png"
                (out / name).write_bytes(png.png_bytes(mask.astype(np.uint8) * 255))
                names.append(name)
    elif fmt == "seg" and isinstance(result.encoded, EncodedFile):
        name = f"{stem}.seg.dcm"
        (out / name).write_bytes(result.encoded.content)
        names.append(name)
    else:
        name = f"{stem}.rle.json"
        _write_json(out / name, {"frames": rle.encode_result(result).frames})
        names.append(name)
    _write_json(out / f"{stem}.json", image_measures(result))
    return [*names, f"{stem}.json"]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _model(result: VolumeSegmentation | Segmentation) -> dict[str, Any]:
    return {
        **dataclasses.asdict(result.model),
        "provider": result.provider,
        "precision": result.precision,
        "fallback": result.fallback,
    }


def volume_measures(result: VolumeSegmentation) -> dict[str, Any]:
    """The measures of a volume as JSON-ready data (no masks, no identifiers)."""
    return {
        "kind": "volume",
        "source_format": result.source_format,
        "n_slices": result.n_slices,
        "spacing_mm": list(result.spacing_mm),
        "lung_volume_ml": result.lung_volume_ml,
        "infection_volume_ml": result.infection_volume_ml,
        "infection_percent": result.infection_percent,
        "lungs": dataclasses.asdict(result.lungs),
        "lung_found": result.lung_found,
        "infection_detected": result.infection_detected,
        "warnings": list(result.warnings),
        "model": _model(result),
        "timings_ms": result.timings_ms,
        "slices": [dataclasses.asdict(s) for s in result.slices],
    }


def image_measures(result: Segmentation) -> dict[str, Any]:
    """The measures of an image as JSON-ready data."""
    return {
        "kind": "image",
        "modality": result.modality,
        "height": result.height,
        "width": result.width,
        "total": dataclasses.asdict(result.total),
        "lung_found": result.lung_found,
        "infection_detected": result.infection_detected,
        "infection_score": result.infection_score,
        "warnings": list(result.warnings),
        "frames": [_frame(f) for f in result.frames],
        "model": _model(result),
        "timings_ms": result.timings_ms,
    }


def _frame(frame: FrameResult) -> dict[str, Any]:
    """One frame's areas and, where the run decided, its decision."""
    decision = dataclasses.asdict(frame.decision) if frame.decision is not None else {}
    if "warnings" in decision:
        decision["warnings"] = list(decision["warnings"])
    return {**decision, **dataclasses.asdict(frame.stats)}


HEADER = (
    f"{'input':<6}{'kind':<7}{'slices':>7}{'lung mL':>10}{'left mL':>10}{'right mL':>10}"
    f"{'inf. mL':>9}{'inf. %':>8}  {'lung':<5}{'infection':<10}output"
)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def volume_row(stem: str, result: VolumeSegmentation, output: str) -> str:
    lungs = result.lungs
    return (
        f"{stem:<6}{'volume':<7}{result.n_slices:>7}{result.lung_volume_ml:>10.1f}"
        f"{lungs.left.volume_ml:>10.1f}{lungs.right.volume_ml:>10.1f}"
        f"{result.infection_volume_ml:>9.1f}{_percent(result.infection_percent)}  "
        f"{_yes(result.lung_found):<5}{_yes(result.infection_detected):<10}{output}"
    )


def image_row(stem: str, result: Segmentation, output: str) -> str:
    dash = "-"
    return (
        f"{stem:<6}{'image':<7}{len(result.frames):>7}{dash:>10}{dash:>10}{dash:>10}{dash:>9}"
        f"{_percent(result.total.infection_percent)}  "
        f"{_yes(result.lung_found):<5}{_yes(result.infection_detected):<10}{output}"
    )


def _percent(value: float | None) -> str:
    return f"{value:>8.2f}" if value is not None else f"{'-':>8}"


def failed_row(stem: str, reason: str) -> str:
    return f"{stem:<6}failed: {reason}"
