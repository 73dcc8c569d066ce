"""COVID-QU-Ex "Infection Segmentation Data" in its published layout.

``[<Train|Val|Test>/]<COVID-19|Non-COVID|Normal>/{images,lung masks,infection masks}/<file>``.
It has no patient ids: each image is its own group and the official split is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from service.datasets.files import regular_file
from service.datasets.labelled import LabelledSet, Sample

QU_CLASSES = {"COVID-19": True, "Non-COVID": False, "Normal": False}
QU_SPLITS = ("Train", "Val", "Test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _existing(path: Path) -> Path | None:
    return regular_file(path, "a mask of the set")


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
            regular_file(image, "an image of the set")
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
