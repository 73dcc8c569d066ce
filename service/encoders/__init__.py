"""Output formats: a :class:`~service.pipeline.result.Segmentation` -> what a client receives.

One module per format, each with ``FORMAT`` and ``encode_result(result) -> Encoded``:
``rle`` (COCO RLE in the JSON answer), ``png`` (base64 PNG in the JSON answer), ``seg`` (a
DICOM Segmentation file, DICOM sources only) and ``fhir`` (a FHIR R4 transaction Bundle). A new
output format is one new module here and one line in :data:`ENCODERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from service.encoders import dicom_seg, fhir, png, rle
from service.errors import InvalidParameterError
from service.pipeline.result import Encoded, Segmentation

ENCODERS: dict[str, Callable[[Segmentation], Encoded]] = {
    rle.FORMAT: rle.encode_result,
    png.FORMAT: png.encode_result,
    dicom_seg.FORMAT: dicom_seg.encode_result,
    fhir.FORMAT: fhir.encode_result,
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
