"""The source headers a DICOM SEG is built from: copies completed where real files lack things.

Real files lack things; the SEG is still written, each case as the standard allows:

* no SOP Instance UID / SOP Class UID in the dataset (anonymised files keep them only in the
  file meta): taken from the File Meta Information (Media Storage SOP Instance / Class UID);
  with neither, a new instance UID (the SEG then references an instance no PACS holds) and the
  SOP class of the modality (CT / CR / DX Image Storage, else Secondary Capture);
* no Modality: from the SOP class (CT for CT Image Storage and Enhanced CT, CR, DX), else OT
  (it only names the SEG's content label);
* no Study Instance UID: the SourceRef's, else a new one shared by the whole SEG (the SEG then
  starts a study of its own); no Series Instance UID likewise;
* an empty or absent Patient / Study module (Patient's Name, Patient ID, Birth Date, Sex,
  Study Date / Time, Accession Number, Study ID, Referring Physician): written empty, as their
  type 2 allows;
* a CT (or any image with a patient position) without Frame of Reference UID, e.g. the
  CQ500 slices: a new Frame of Reference UID shared by the SEG's frames (the IOD requires one;
  it relates the SEG's frames to each other, not to other series); a CR keeps none (its IOD
  has no Frame of Reference), and then only one frame can be written (a projection image);
* a Pixel Spacing that is not two positive numbers (RG1's ``0\\0``) or a Slice Thickness that
  is not positive: left out of the SEG's Pixel Measures (a CR without Pixel Spacing, which has
  only Imager Pixel Spacing at the detector, likewise gets none: the detector spacing is not
  a spacing in the patient);
* Patient Identity Removed YES without a De-identification Method (type 1C then): the method
  is written as :data:`DEIDENTIFICATION_UNSTATED`;
* no Image Position / Orientation (a CR): Patient Orientation (type 2C) copied, or empty;
* a Referenced Study Sequence whose items lack their SOP class (a source's own defect, which
  dciodvfy reports as an error in the SEG): left out (type 3).

The copies share the source's elements (without pixel data and private elements) and replace,
never change, the ones they complete: the caller's headers stay as they were.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    SecondaryCaptureImageStorage,
)

from service.errors import UnsupportedMediaError
from service.imaging.sniff import PYDICOM_PARSE_ERRORS
from service.imaging.types import SourceRef

DEIDENTIFICATION_UNSTATED = "as its source images; the method is not stated in them"

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})  # Pixel / Float / Double Data
_TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)
_MODALITY_OF_CLASS = {
    CTImageStorage: "CT",
    EnhancedCTImageStorage: "CT",
    ComputedRadiographyImageStorage: "CR",
    DigitalXRayImageStorageForPresentation: "DX",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX",  # Digital X-Ray Image Storage - For Processing
}
_CLASS_OF_MODALITY = {
    "CT": CTImageStorage,
    "CR": ComputedRadiographyImageStorage,
    "DX": DigitalXRayImageStorageForPresentation,
}


def prepare_headers(source: SourceRef, headers: Sequence[Dataset]) -> list[Dataset]:
    """Copies of the headers completed as the module docstring says (the originals untouched)."""
    copies = [_copy(h) for h in headers]
    study = source.study_uid or _first(copies, "StudyInstanceUID") or hd.UID()
    series = source.series_uid or _first(copies, "SeriesInstanceUID") or hd.UID()
    positioned = any(
        "ImagePositionPatient" in h or "PerFrameFunctionalGroupsSequence" in h for h in copies
    )
    frames_of_reference = {
        str(h.FrameOfReferenceUID) for h in copies if _has(h, "FrameOfReferenceUID")
    }
    if len(frames_of_reference) > 1:
        raise UnsupportedMediaError(
            "the source's slices have different Frame of Reference UIDs: they do not share one "
            "patient coordinate system, so one DICOM SEG cannot refer to them all"
        )
    frame_of_reference = next(iter(frames_of_reference), None)
    for index, h in enumerate(copies):
        meta = getattr(h, "file_meta", None) or FileMetaDataset()
        if not _has(h, "SOPInstanceUID"):
            known = source.instance_uids[index] if len(source.instance_uids) == len(copies) else ""
            _set(
                h, "SOPInstanceUID", _value(meta, "MediaStorageSOPInstanceUID") or known or hd.UID()
            )
        modality = str(h.get("Modality") or "").strip().upper()
        if not _has(h, "SOPClassUID"):
            fallback = _CLASS_OF_MODALITY.get(modality, SecondaryCaptureImageStorage)
            _set(h, "SOPClassUID", _value(meta, "MediaStorageSOPClassUID") or fallback)
        if not modality:
            _set(h, "Modality", _MODALITY_OF_CLASS.get(str(h.SOPClassUID), "OT"))
        if not _has(h, "StudyInstanceUID"):
            _set(h, "StudyInstanceUID", study)
        if not _has(h, "SeriesInstanceUID"):
            _set(h, "SeriesInstanceUID", series)
        for keyword in _TYPE2_PATIENT_STUDY:
            if keyword not in h or h[keyword].value is None:
                _set(h, keyword, "")
        needs_frame = positioned or str(h.SOPClassUID) in (CTImageStorage, EnhancedCTImageStorage)
        if not _has(h, "FrameOfReferenceUID") and needs_frame:
            frame_of_reference = frame_of_reference or hd.UID()
            _set(h, "FrameOfReferenceUID", frame_of_reference)
        elif "FrameOfReferenceUID" in h and not _has(h, "FrameOfReferenceUID"):
            del h.FrameOfReferenceUID
        if "PixelSpacing" in h and not _positive(h.get("PixelSpacing"), 2):
            del h.PixelSpacing
        if "SliceThickness" in h and not _positive(h.get("SliceThickness"), 1):
            del h.SliceThickness
        if _value(h, "PatientIdentityRemoved").upper() == "YES" and not (
            _has(h, "DeidentificationMethod") or "DeidentificationMethodCodeSequence" in h
        ):
            _set(h, "DeidentificationMethod", DEIDENTIFICATION_UNSTATED)
        references = h.get("ReferencedStudySequence")
        if references is not None and not all(
            _has(item, "ReferencedSOPClassUID") and _has(item, "ReferencedSOPInstanceUID")
            for item in references
        ):
            del h.ReferencedStudySequence
    return copies


def _copy(header: Dataset) -> Dataset:
    """A new dataset sharing the header's elements, without pixel data, private elements and
    values pydicom cannot parse (the SEG copies none of them); :func:`_set` replaces an
    element instead of changing it, so that the caller's header stays as it was."""
    out = Dataset()
    for tag in list(header.keys()):  # a Dataset iterates its elements, parsing each
        if tag in _PIXEL_TAGS or tag.is_private:
            continue
        try:
            element = header[tag]
        except PYDICOM_PARSE_ERRORS:  # a value pydicom cannot parse: the SEG is written without it
            continue
        out.add(element)
    meta = getattr(header, "file_meta", None)
    out.file_meta = copy.deepcopy(meta) if meta is not None else FileMetaDataset()
    return out


def _set(ds: Dataset, keyword: str, value: object) -> None:
    """Set ``keyword`` to a new element (never the shared one of the source header)."""
    if keyword in ds:
        del ds[keyword]
    setattr(ds, keyword, value)


def _has(ds: Dataset, keyword: str) -> bool:
    return bool(str(ds.get(keyword) or "").strip())


def _value(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword) or "").strip()


def _first(headers: Sequence[Dataset], keyword: str) -> str:
    return next((_value(h, keyword) for h in headers if _has(h, keyword)), "")


def _positive(value: object, count: int) -> bool:
    """Whether ``value`` is ``count`` finite positive numbers (DS values)."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        numbers = [float(v) for v in items]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return len(numbers) == count and all(math.isfinite(n) and n > 0 for n in numbers)
