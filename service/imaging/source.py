"""Build the :class:`~service.imaging.types.SourceRef` of a decoded DICOM dataset."""

from __future__ import annotations

import copy

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import BaseTag, Tag

from service.imaging.dicom_attrs import attr, text, uid
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

    Nothing is parsed here (parsing every value of a header cost 7 ms per file, more than
    decoding a small CT slice): elements pydicom has not parsed yet are shared as they were
    read (immutable), parsed ones are copied. A value pydicom cannot parse therefore stays in
    the header unparsed; its readers read through ``service.imaging.dicom_attrs.attr`` or leave
    such elements out (``service.encoders.seg_sources``).
    """
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    for tag in list(ds.keys()):  # a Dataset iterates its elements, parsing each
        if tag not in PIXEL_TAGS:
            element = ds.get_item(tag)
            elements[tag] = element if isinstance(element, RawDataElement) else copy.copy(element)
    header = Dataset(elements)
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
    return header
