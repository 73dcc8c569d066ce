"""The FHIR R4 resources of the ``fhir`` output format (:mod:`service.encoders.fhir` puts them
in the Bundle): entries, the Patient reference, the ImagingStudy and one Observation.

Plain dicts of one fixed shape; codes from :mod:`service.encoders.seg_codes`. The Patient ID is
copied for the Bundle's recipient only, never logged.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any

from pydicom.dataset import Dataset

from service.encoders import seg_codes as codes
from service.errors import UnsupportedMediaError
from service.imaging.dicom_attrs import attr
from service.imaging.types import SourceRef

NO_PATIENT = "patient not identified in the DICOM source"
OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
SITES = {
    None: codes.BODY_LUNG,
    "left": codes.BODY_LEFT_LUNG,
    "right": codes.BODY_RIGHT_LUNG,
}


def url() -> str:
    """A fresh ``urn:uuid`` fullUrl."""
    return f"urn:uuid:{uuid.uuid4()}"


def entry(url: str, resource: dict[str, Any], if_none_exist: str | None = None) -> dict[str, Any]:
    """A transaction entry that POSTs ``resource`` (conditionally with ``if_none_exist``)."""
    request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist is not None:
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": url, "resource": resource, "request": request}


def subject(source: SourceRef | None) -> dict[str, Any] | None:
    """A logical reference to the Patient by the DICOM Patient ID, or None without one."""
    header = source.headers[0] if source is not None and source.headers else None
    patient_id = _readable(header, "PatientID")
    if not patient_id:
        return None
    identifier: dict[str, Any] = {"value": patient_id}
    issuer = _readable(header, "IssuerOfPatientID")
    if OID.match(issuer):
        identifier["system"] = f"urn:oid:{issuer}"
    elif issuer:
        identifier["assigner"] = {"display": issuer}
    return {"type": "Patient", "identifier": identifier}


def _readable(header: Dataset | None, keyword: str) -> str:
    """A text attribute of the header, "" when absent or when pydicom cannot parse it (the
    header keeps such values unparsed: ``service.imaging.source.header_of``)."""
    if header is None:
        return ""
    try:
        return str(attr(header, keyword) or "").strip()
    except UnsupportedMediaError:
        return ""


def imaging_study(
    source: SourceRef | None, subject: dict[str, Any] | None
) -> dict[str, Any] | None:
    if source is None or not source.study_uid:
        return None
    modality = (source.modality_code or "").strip().upper()
    coding = {"system": codes.DICOM_DCM, "code": modality} if modality else None
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": codes.DICOM_UID, "value": f"urn:oid:{source.study_uid}"}],
        "status": "available",
        "subject": subject or {"display": NO_PATIENT},
        "numberOfSeries": 1,
    }
    if coding is not None:
        study["modality"] = [coding]
    instances = [uid for uid in dict.fromkeys(source.instance_uids) if uid]
    if source.series_uid and coding is not None:
        series: dict[str, Any] = {
            "uid": source.series_uid,
            "modality": coding,
            "numberOfInstances": len(instances),
        }
        if instances and source.sop_class_uid:
            sop_class = {"system": codes.RFC_3986, "code": f"urn:oid:{source.sop_class_uid}"}
            series["instance"] = [{"uid": uid, "sopClass": sop_class} for uid in instances]
        study["series"] = [series]
        study["numberOfInstances"] = len(instances)
    return study


def observation(
    code: str,
    display: str,
    unit: str,
    value: float,
    side: str | None,
    subject: dict[str, Any] | None,
    when: str,
    device_url: str,
    study_url: str | None,
) -> dict[str, Any]:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{code} is not a finite number")
    site_code, site_display = SITES[side]
    where = f" ({side} lung)" if side else ""
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {"system": codes.OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}
                ]
            }
        ],
        "code": {
            "coding": [{"system": codes.MEASURE_SYSTEM, "code": code, "display": display}],
            "text": f"{display}{where}, automated segmentation (research use)",
        },
        "issued": when,
        "bodySite": {
            "coding": [{"system": codes.SNOMED, "code": site_code, "display": site_display}]
        },
        "valueQuantity": {
            "value": round(number, 2),
            "unit": unit,
            "system": codes.UCUM,
            "code": unit,
        },
        "device": {"reference": device_url, "type": "Device"},
    }
    if subject is not None:
        observation["subject"] = subject
    if study_url is not None:
        observation["derivedFrom"] = [{"reference": study_url, "type": "ImagingStudy"}]
    return observation
