"""Build the :class:`~service.imaging.types.SourceRef` of a decoded DICOM dataset."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset

from service.imaging.dicom_attrs import attr, text, uid
from service.imaging.types import SourceRef


def dicom_source(ds: Dataset) -> SourceRef:
    """The reference of one decoded DICOM dataset; its pixel data is dropped from the copy
    kept in ``headers`` (the decoded pixels are held elsewhere)."""
    instance = uid(ds, "SOPInstanceUID")
    header = Dataset(ds)  # shallow: shares elements, without PixelData
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in header:
            delattr(header, keyword)
    return SourceRef(
        format="dicom",
        study_uid=uid(ds, "StudyInstanceUID"),
        series_uid=uid(ds, "SeriesInstanceUID"),
        instance_uids=(instance,) if instance else (),
        sop_class_uid=uid(ds, "SOPClassUID"),
        frame_of_reference_uid=uid(ds, "FrameOfReferenceUID"),
        modality_code=text(ds, "Modality", 16) if attr(ds, "Modality") is not None else None,
        headers=(header,),
    )
