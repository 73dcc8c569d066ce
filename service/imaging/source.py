"""Build the :class:`~service.imaging.types.SourceRef` of a decoded DICOM dataset."""

from __future__ import annotations

import copy

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag

from service.imaging.dicom_attrs import attr, text, uid
from service.imaging.sniff import PYDICOM_PARSE_ERRORS
from service.imaging.types import SourceRef

PIXEL_TAGS = frozenset({Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)})
"""Pixel Data, Float Pixel Data, Double Float Pixel Data."""


def dicom_source(ds: Dataset) -> SourceRef:
    """The reference of one decoded DICOM dataset; its pixel data is dropped from the copy
    kept in ``headers`` (the decoded pixels are held elsewhere)."""
    instance = uid(ds, "SOPInstanceUID")
    return SourceRef(
        format="dicom",
        study_uid=uid(ds, "StudyInstanceUID"),
        series_uid=uid(ds, "SeriesInstanceUID"),
        instance_uids=(instance,) if instance else (),
        sop_class_uid=uid(ds, "SOPClassUID"),
        frame_of_reference_uid=uid(ds, "FrameOfReferenceUID"),
        modality_code=text(ds, "Modality", 16) if attr(ds, "Modality") is not None else None,
        headers=(header_of(ds),),
    )


def header_of(ds: Dataset) -> Dataset:
    """A new dataset with every element of ``ds`` but its pixel data (``ds`` is unchanged).

    Elements whose stored value pydicom cannot parse are left out of the copy (the image
    decoded without them; an output that needs one creates or omits it as the standard
    allows, see ``service.encoders.seg_sources``).
    """
    header = Dataset()
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
    for tag in list(ds.keys()):
        if tag in PIXEL_TAGS:
            continue
        try:
            element = ds[tag]
        except PYDICOM_PARSE_ERRORS:  # a malformed value the decoder never needed
            continue
        header.add(copy.copy(element))
    return header
