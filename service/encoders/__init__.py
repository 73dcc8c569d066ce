"""Output formats: a :class:`~service.pipeline.result.Segmentation` -> what a client receives.

One module per format, each with ``FORMAT`` and ``encode_result(result) -> Encoded``:
``rle`` (COCO RLE in the JSON answer) and ``png`` (base64 PNG in the JSON answer). A new output
format is one new module here and one line in :data:`ENCODERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from service.encoders import png, rle
from service.errors import InvalidParameterError
from service.pipeline.result import Encoded, Segmentation

ENCODERS: dict[str, Callable[[Segmentation], Encoded]] = {
    rle.FORMAT: rle.encode_result,
    png.FORMAT: png.encode_result,
}


def encoder_for(fmt: str) -> Callable[[Segmentation], Encoded]:
    """The encoder of output format ``fmt``; InvalidParameterError (422) listing the formats."""
    try:
        return ENCODERS[fmt]
    except KeyError:
        raise InvalidParameterError(
            f"format={fmt!r} is not an output format; choose one of {', '.join(ENCODERS)}",
            "format",
        ) from None
