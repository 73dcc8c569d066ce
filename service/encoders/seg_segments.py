"""The segments of lungseg's DICOM SEG: their masks and descriptions (highdicom).

Segments 1 "Lung" (or 1 "Left lung" and 2 "Right lung" when split lungs are given) and then
"Infection", coded as :mod:`service.encoders.seg_codes` says, each with its algorithm
identification (model name, version, family "Artificial Intelligence").
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from service.encoders import seg_codes

MANUFACTURER = "lungseg"


def segments(
    infection: np.ndarray,
    lung: np.ndarray | None,
    left: np.ndarray | None,
    right: np.ndarray | None,
    model_name: str,
    model_version: str,
) -> tuple[list[np.ndarray], list[hd.seg.SegmentDescription]]:
    """The masks (each bool ``(frames, H, W)``) and their descriptions, in segment order."""
    split = left is not None or right is not None
    if split == (lung is not None) or (split and (left is None or right is None)):
        raise ValueError("give either lung, or both left_lung and right_lung")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name[:64],
        family=seg_codes.ARTIFICIAL_INTELLIGENCE,
        version=model_version[:64],
        source=MANUFACTURER,
    )
    lungs: list[tuple[str, np.ndarray | None, Code | None]] = (
        [("Left lung", left, seg_codes.LEFT), ("Right lung", right, seg_codes.RIGHT)]
        if split
        else [("Lung", lung, None)]
    )
    masks: list[np.ndarray] = []
    descriptions: list[hd.seg.SegmentDescription] = []
    colours = {"Lung": (80, 160, 255), "Left lung": (80, 160, 255), "Right lung": (80, 255, 160)}
    for label, mask, side in lungs:
        number = len(descriptions) + 1
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=seg_codes.ANATOMICAL_STRUCTURE,
            segmented_property_type=seg_codes.LUNG,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*colours[label]),
        )
        if side is not None:
            _add_modifier(description, side)
        masks.append(_frames(mask, label))
        descriptions.append(description)
    description = hd.seg.SegmentDescription(
        segment_number=len(descriptions) + 1,
        segment_label="Infection",
        segmented_property_category=seg_codes.MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
        segmented_property_type=seg_codes.INFILTRATE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(255, 60, 60),
    )
    _add_modifier(description, seg_codes.COVID_19)
    masks.append(_frames(infection, "infection"))
    descriptions.append(description)
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"the masks differ in shape: {[m.shape for m in masks]}")
    return masks, descriptions


def _add_modifier(description: Dataset, code: Code) -> None:
    """Segmented Property Type Modifier Code Sequence (0062,0011), inside the type's item."""
    concept = hd.sr.CodedConcept.from_code(code)
    description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
        concept
    ]


def _frames(mask: np.ndarray | None, name: str) -> np.ndarray:
    if mask is None:
        raise ValueError(f"the {name} mask is missing")
    array = np.asarray(mask)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise ValueError(f"the {name} mask must be (frames, rows, columns), got {array.shape}")
    return array.astype(bool, copy=False)
