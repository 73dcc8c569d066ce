"""Read a labelled set in either layout, and decode its images and masks."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from service.datasets.covid_qu_ex import read_covid_qu_ex
from service.datasets.files import read_file, regular_file
from service.datasets.labelled import LabelledSet, Sample
from service.datasets.ours import MANIFEST, read_ours
from service.errors import InvalidInputError
from service.imaging import DEFAULT_MAX_PIXELS, decode
from service.imaging.raster import check_pixel_limit, jpeg_size, png_size
from service.imaging.types import DecodedImage

log = logging.getLogger(__name__)


def read_set(root: Path, name: str | None = None) -> LabelledSet:
    """Read a labelled set in either layout; raises InvalidInputError when neither is found."""
    manifest = regular_file(root / MANIFEST, MANIFEST)
    reader = read_ours if manifest is not None else read_covid_qu_ex
    found = reader(root, name)
    if not found.samples:
        raise InvalidInputError(
            f"no labelled images found in {root.name!r}: expected meta.csv with images/ and "
            "masks/{lung,infection}/, or COVID-QU-Ex folders <class>/images, <class>/lung masks"
        )
    log.info("read set %s: %d samples (%s layout)", found.name, len(found.samples), found.layout)
    return found


def load_image(sample: Sample, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode a sample's image with the service's own decoder (one implementation), its size
    and pixel count checked before it is read and decoded."""
    return decode(read_file(sample.image, "an image of the set"), max_pixels=max_pixels)


def load_mask(
    path: Path | None, shape: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray | None:
    """Read a 0/255 mask as bool ``shape``; ``None`` when the set has no such mask.

    The mask file gets the image guards (size before reading, pixels from its header before
    decoding). A mask whose size differs from the image is resized with nearest-neighbour
    interpolation.
    """
    if path is None:
        return None
    data = read_file(path, "a mask of the set")
    size = png_size(data) or jpeg_size(data)
    if size is not None:
        check_pixel_limit(size[0], size[1], 1, max_pixels, "a mask of the set")
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InvalidInputError("a mask of the set cannot be read as an image")
    check_pixel_limit(mask.shape[0], mask.shape[1], 1, max_pixels, "a mask of the set")
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 127
