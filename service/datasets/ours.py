"""Our layout: ``images/<id>.png|.jpg``, ``masks/{lung,infection}/<id>.png``, ``meta.csv``.

``meta.csv`` columns: ``id,image,group,finding,covid,modality,source,license``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from service.datasets.labelled import LabelledSet, Sample
from service.errors import InvalidInputError
from service.imaging.types import Modality


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def _modality(value: str) -> Modality:
    lowered = value.strip().lower()
    if lowered in ("ct",):
        return "ct"
    if lowered in ("cxr", "cr", "dx", "xray", "x-ray"):
        return "cxr"
    raise InvalidInputError(f"meta.csv modality must be CT or CXR, got {value!r}")


def read_ours(root: Path, name: str | None = None) -> LabelledSet:
    """Read a set in our layout (``meta.csv`` at ``root``)."""
    samples = []
    with (root / "meta.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                sample_id, image = row["id"], row["image"]
            except KeyError as err:
                raise InvalidInputError(f"meta.csv lacks the column {err}") from err
            samples.append(
                Sample(
                    id=sample_id,
                    image=root / image,
                    lung=_existing(root / "masks" / "lung" / f"{sample_id}.png"),
                    infection=_existing(root / "masks" / "infection" / f"{sample_id}.png"),
                    group=row.get("group") or sample_id,
                    finding=row.get("finding", ""),
                    covid=row.get("covid", "").strip().lower() in ("yes", "true", "1"),
                    modality=_modality(row.get("modality") or "CXR"),
                    license=row.get("license", ""),
                )
            )
    return LabelledSet(name=name or root.name, layout="lungseg", samples=samples)
