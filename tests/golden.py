"""Masks of the shipped models on real files, recorded once, compared after every refactoring.

``python -m tests.golden --data ../shared/data --write`` records, for every file below and every
model kind (unet, cnn, threshold), the sha256 of each frame's packed lung and infection masks
and their areas, as the service computes them with its default settings (int8 variants on the
CPU), into ``tests/fixtures/golden_masks.json``. ``tests/test_golden.py`` recomputes them: a
change of architecture must leave every mask identical. Re-record (and say so in the commit)
only when a model or a documented behaviour changes on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from service.models.segmenter import Segmenter, SegmenterConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = REPO_ROOT / "tests" / "fixtures" / "golden_masks.json"
KINDS = ("unet", "cnn", "threshold")
FILES = (
    "files/dicom/RG1_UNCR.dcm",
    "files/dicom/RG1_J2KR.dcm",
    "files/dicom/693_UNCR.dcm",
    "files/dicom/CT_small.dcm",
    "files/dicom/eCT_Supplemental.dcm",
    "files/covid-qu-ex-layout/Val/COVID-19/images/covid_1902.png",
    "files/covid-qu-ex-layout/Val/Non-COVID/images/non_COVID (11117).png",
    "files/covid-qu-ex-layout/Val/Normal/images/Normal (10233).png",
    "ct-covid19-majun/images/slice-0003.png",
    "cxr-covid19-gb/images/1312A392-67A3-4EBF-9319-810CF6DA5EF6.png",
)
CT_PNGS = ("ct-covid19-majun/",)


def digest(mask: np.ndarray) -> str:
    """sha256 of a bool ``(H, W)`` mask's packed bits and shape (first 16 hex digits)."""
    payload = np.packbits(mask.astype(bool)).tobytes() + str(mask.shape).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def modality_of(path: str) -> str:
    """The ``modality`` query of a file: 8-bit CT slices must say ``ct``, the rest ``auto``."""
    return "ct" if path.startswith(CT_PNGS) else "auto"


def record(segmenter: Segmenter, data: Path) -> dict[str, Any]:
    """``{file: {kind: {"model": name, "frames": [[lung, infection, lung_px, inf_px], ...]}}}``."""
    out: dict[str, Any] = {}
    for name in FILES:
        raw = (data / name).read_bytes()
        out[name] = {}
        for kind in KINDS:
            result = segmenter.segment_bytes(raw, modality_of(name), kind)  # type: ignore[arg-type]
            out[name][kind] = {
                "model": f"{result.model.name} {result.model.version}",
                "frames": [
                    [
                        digest(f.masks.lung),
                        digest(f.masks.infection),
                        f.stats.lung_area_px,
                        f.stats.infection_area_px,
                    ]
                    for f in result.frames
                ],
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.name}")
    args = parser.parse_args()
    segmenter = Segmenter(SegmenterConfig(REPO_ROOT / "models", providers="cpu"))
    result = record(segmenter, args.data)
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    if args.write:
        GOLDEN.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
