"""Readers of labelled sets, as they are published.

Two layouts are read, with no conversion step:

* ours (``../shared/data/<set>``)::

      images/<id>.png|.jpg   masks/lung/<id>.png   masks/infection/<id>.png   meta.csv

  ``meta.csv`` columns: ``id,image,group,finding,covid,modality,source,license``.

* COVID-QU-Ex "Infection Segmentation Data"::

      [<Train|Val|Test>/]<COVID-19|Non-COVID|Normal>/{images,lung masks,infection masks}/<file>

  It has no patient ids: each image is its own group and the official split is kept.

Training, export and the benchmark all read sets through this module.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from service.errors import InvalidInputError
from service.imaging import decode
from service.imaging.types import DecodedImage, Modality

log = logging.getLogger(__name__)

QU_CLASSES = {"COVID-19": True, "Non-COVID": False, "Normal": False}
QU_SPLITS = ("Train", "Val", "Test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Sample:
    """One labelled image of a set; paths are absolute, masks ``None`` where the set has none."""

    id: str
    image: Path
    lung: Path | None
    infection: Path | None
    group: str
    finding: str
    covid: bool
    modality: Modality
    split: str | None = None
    license: str = ""


@dataclass(frozen=True)
class LabelledSet:
    """A named list of samples; ``layout`` is ``"lungseg"`` or ``"covid-qu-ex"``."""

    name: str
    layout: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def has_lung(self) -> bool:
        return any(s.lung is not None for s in self.samples)

    @property
    def has_infection(self) -> bool:
        return any(s.infection is not None for s in self.samples)


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


def _qu_class_dirs(root: Path) -> Iterable[tuple[str | None, Path]]:
    """Yield ``(split, class_dir)`` for the COVID-QU-Ex folders found under ``root``."""
    for split in QU_SPLITS:
        for cls in QU_CLASSES:
            if (root / split / cls / "images").is_dir():
                yield split, root / split / cls
    for cls in QU_CLASSES:
        if (root / cls / "images").is_dir():
            yield (root.name if root.name in QU_SPLITS else None), root / cls


def read_covid_qu_ex(root: Path, name: str | None = None) -> LabelledSet:
    """Read a set in the COVID-QU-Ex layout (whole set, one split folder, or class folders)."""
    samples = []
    for split, class_dir in _qu_class_dirs(root):
        for image in sorted((class_dir / "images").iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            stem_id = f"{split + '/' if split else ''}{class_dir.name}/{image.stem}"
            samples.append(
                Sample(
                    id=stem_id,
                    image=image,
                    lung=_existing(class_dir / "lung masks" / image.name),
                    infection=_existing(class_dir / "infection masks" / image.name),
                    group=stem_id,
                    finding=class_dir.name,
                    covid=QU_CLASSES[class_dir.name],
                    modality="cxr",
                    split=split,
                    license="COVID-QU-Ex (cite Tahir et al. 2021); infection masks QaTa-COV19 "
                    "CC BY-NC-SA 3.0 IGO as reported",
                )
            )
    return LabelledSet(name=name or root.name, layout="covid-qu-ex", samples=samples)


def read_set(root: Path, name: str | None = None) -> LabelledSet:
    """Read a labelled set in either layout; raises InvalidInputError when neither is found."""
    reader = read_ours if (root / "meta.csv").is_file() else read_covid_qu_ex
    found = reader(root, name)
    if not found.samples:
        raise InvalidInputError(
            f"no labelled images found in {root.name!r}: expected meta.csv with images/ and "
            "masks/{lung,infection}/, or COVID-QU-Ex folders <class>/images, <class>/lung masks"
        )
    log.info("read set %s: %d samples (%s layout)", found.name, len(found.samples), found.layout)
    return found


def load_image(sample: Sample, max_pixels: int | None = None) -> DecodedImage:
    """Decode a sample's image with the service's own decoder (one implementation)."""
    data = sample.image.read_bytes()
    return decode(data) if max_pixels is None else decode(data, max_pixels=max_pixels)


def load_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Read a 0/255 mask as bool ``shape``; ``None`` when the set has no such mask.

    A mask whose size differs from the image is resized with nearest-neighbour interpolation.
    """
    if path is None:
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InvalidInputError(f"mask {path.name} cannot be read as an image")
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127


def split_samples(model_dir: Path, data_root: Path, side: str, limit: int) -> list[Sample]:
    """Up to ``limit`` samples of a model's ``train`` or ``val`` side (its ``split.json``),
    spread evenly over the sets found under ``data_root``."""
    split = json.loads((model_dir / "split.json").read_text(encoding="utf-8"))["sets"]
    chosen: list[Sample] = []
    for name, parts in split.items():
        ids = set(parts.get(side, []))
        if ids and (data_root / name).is_dir():
            chosen += [s for s in read_set(data_root / name, name).samples if s.id in ids]
    step = max(1, len(chosen) // limit)
    return chosen[::step][:limit]
