"""Image decoding: DICOM, PNG and JPEG bytes -> :class:`DecodedImage` (no web or torch imports)."""

from service.imaging.decode import DEFAULT_MAX_PIXELS, decode
from service.imaging.types import DecodedImage

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedImage", "decode"]
