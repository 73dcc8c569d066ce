"""Our layout: ``images/<id>.png|.jpg``, ``masks/{lung,infection}/<id>.png``, ``meta.csv``.

``meta.csv`` columns: ``id,image,group,finding,covid,modality,source,license``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from service.datasets.files import inside, read_file, regular_file
from service.datasets.labelled import LabelledSet, Sample
from service.errors import InvalidInputError
from service.imaging.types import Modality

MANIFEST = "meta.csv"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
REQUIRED = ("id", "image")


def _modality(value: str) -> Modality:
    lowered = value.strip().lower()
    if lowered in ("ct",):
        return "ct"
    if lowered in ("cxr", "cr", "dx", "xray", "x-ray"):
        return "cxr"
    raise InvalidInputError(f"meta.csv modality must be CT or CXR, got {value!r}")


def manifest_rows(data: bytes) -> list[dict[str, str]]:
    """The rows of a ``meta.csv``: UTF-8 with or without a BOM, comma- or semicolon-separated.

    Raises:
        InvalidInputError: not UTF-8 text, not a CSV table, or without the ``id`` and
            ``image`` columns.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{MANIFEST} is not UTF-8 text: save it as UTF-8 (with or without BOM)"
        ) from None
    if "\0" in text:
        raise InvalidInputError(f"{MANIFEST} is not a text table (it holds NUL bytes)")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        rows = list(reader)
    except csv.Error as err:
        raise InvalidInputError(f"{MANIFEST} is not a valid CSV table: {err}") from err
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInputError(f"{MANIFEST} lacks the column(s) {', '.join(missing)}")
    return rows


def read_ours(root: Path, name: str | None = None) -> LabelledSet:
    """Read a set in our layout (``meta.csv`` at ``root``): every path it names is checked."""
    rows = manifest_rows(read_file(root / MANIFEST, MANIFEST, MAX_MANIFEST_BYTES))
    samples = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        sample_id, image = (row.get("id") or "").strip(), row.get("image") or ""
        where = f"{MANIFEST} row {number}"
        if not sample_id or sample_id in (".", "..") or any(c in sample_id for c in "/\\\0"):
            raise InvalidInputError(f"the id of {where} must be a plain name (no / or \\)")
        image_path = inside(root, image, f"the image of {where}")
        if regular_file(image_path, f"the image of {where}") is None:
            raise InvalidInputError(f"the image of {where} is not in the set")
        masks = [
            regular_file(
                inside(root, f"masks/{kind}/{sample_id}.png", f"the id of {where}"),
                f"the {kind} mask of {where}",
            )
            for kind in ("lung", "infection")
        ]
        samples.append(
            Sample(
                id=sample_id,
                image=image_path,
                lung=masks[0],
                infection=masks[1],
                group=row.get("group") or sample_id,
                finding=row.get("finding") or "",
                covid=(row.get("covid") or "").strip().lower() in ("yes", "true", "1"),
                modality=_modality(row.get("modality") or "CXR"),
                license=row.get("license") or "",
            )
        )
    return LabelledSet(name=name or root.name, layout="lungseg", samples=samples)
