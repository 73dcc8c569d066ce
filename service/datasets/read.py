"""Read a labelled set in either layout, and decode its images and masks."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from service.datasets.covid_qu_ex import read_covid_qu_ex
from service.datasets.labelled import LabelledSet, Sample
from service.datasets.ours import read_ours
from service.errors import InvalidInputError
from service.imaging import decode
from service.imaging.types import DecodedImage

log = logging.getLogger(__name__)


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
