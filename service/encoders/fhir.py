"""The ``fhir`` output format: the measures as a FHIR R4 transaction Bundle for an EHR.

The Bundle (``type: transaction``, so that an EHR bridge can POST it as it is to the FHIR base
URL; every entry has a ``urn:uuid`` fullUrl and a ``request``, and the references between
entries are those fullUrls, which the server rewrites) holds:

* a **DiagnosticReport**: ``status: preliminary``, category v2-0074 ``RAD``, code LOINC
  24627-2 "CT Chest" or 36643-5 "XR Chest 2 Views", ``issued`` now, ``imagingStudy`` and
  ``result`` referencing the entries below, a ``conclusion`` saying research use, not a medical
  device;
* an **ImagingStudy** identified by the Study Instance UID (identifier system
  ``urn:dicom:uid``, value ``urn:oid:<uid>``), with the series and instances measured; created
  only when no ImagingStudy with that identifier exists (``ifNoneExist``), so a study the EHR
  already knows is reused. Absent when the source has no Study Instance UID (PNG / JPEG, or an
  anonymised file whose UIDs were emptied);
* a **Device** naming the model (``deviceName`` of type ``model-name``, ``version``), also
  ``ifNoneExist`` by its identifier ``<name>/<version>``;
* one **Observation** per measure (``status: preliminary``, category ``imaging``, UCUM
  quantities): lung volume and infection volume (``mL``), infection percent (``%``), lung and
  infection area (``mm2``, single images with a known pixel spacing), each for both lungs
  (bodySite SCT 39607008) and, when the caller knows them, per lung (SCT 44029006 left /
  3341006 right lung structure); ``device`` the Device, ``derivedFrom`` the ImagingStudy.

``subject`` (report and observations) is a logical reference to the Patient by the DICOM
Patient ID (``identifier``; its system ``urn:oid:<Issuer of Patient ID>`` when the issuer is an
OID), and absent when the source has no Patient ID. ImagingStudy requires a subject: without a
Patient ID it is a reference by display only ("patient not identified in the DICOM source").
Patient IDs are copied into the Bundle for its recipient only: never logged here.

Codes and their sources: :mod:`service.encoders.seg_codes`; the resources themselves:
:mod:`service.encoders.fhir_resources`. The JSON is built from plain dicts
(it is small and of one fixed shape); the tests validate it with the ``fhir.resources`` R4B
models and check every reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.encoders import fhir_resources as res
from service.encoders import seg_codes as codes
from service.imaging.types import Modality, SourceRef
from service.pipeline.result import EncodedFile, Segmentation

FORMAT = "fhir"
MEDIA_TYPE = "application/fhir+json"
CONCLUSION = (
    "Automated lung and COVID-19 infection measures by lungseg ({model}). Research use only: "
    "lungseg is not a medical device; these values are not a diagnosis and must be reviewed "
    "by a qualified reader."
)


@dataclass(frozen=True)
class Measures:
    """What was measured; ``None`` = not measured or unknown (no Observation for it).

    ``left`` / ``right``: the same measures of the patient's left / right lung, when known
    (their own ``left`` / ``right`` are ignored).
    """

    lung_volume_ml: float | None = None
    infection_volume_ml: float | None = None
    infection_percent: float | None = None
    lung_area_mm2: float | None = None
    infection_area_mm2: float | None = None
    left: Measures | None = None
    right: Measures | None = None


# (attribute, code, display, UCUM unit)
_MEASURES = (
    ("lung_volume_ml", "lung-volume", "Lung volume", "mL"),
    ("infection_volume_ml", "infection-volume", "Infection volume", "mL"),
    ("infection_percent", "infection-percent", "Infection percent of lung", "%"),
    ("lung_area_mm2", "lung-area", "Lung area", "mm2"),
    ("infection_area_mm2", "infection-area", "Infection area", "mm2"),
)


def encode_result(result: Segmentation) -> EncodedFile:
    """The Bundle of a single-image request: lung / infection area (mm², when the pixel
    spacing is known) and the infection percent of its frames together."""
    total = result.total
    measures = Measures(
        infection_percent=total.infection_percent,
        lung_area_mm2=total.lung_area_mm2,
        infection_area_mm2=total.infection_area_mm2,
    )
    return encode_fhir(
        measures,
        source=result.source,
        model_name=result.model.name,
        model_version=result.model.version,
        modality=result.modality,
    )


def encode_fhir(
    measures: Measures,
    *,
    source: SourceRef | None,
    model_name: str,
    model_version: str,
    modality: Modality,
    issued: datetime | None = None,
) -> EncodedFile:
    """:func:`fhir_bundle` as ``application/fhir+json`` bytes."""
    bundle = fhir_bundle(
        measures,
        source=source,
        model_name=model_name,
        model_version=model_version,
        modality=modality,
        issued=issued,
    )
    content = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return EncodedFile(FORMAT, MEDIA_TYPE, content, "lungseg-report.fhir.json")


def fhir_bundle(
    measures: Measures,
    *,
    source: SourceRef | None,
    model_name: str,
    model_version: str,
    modality: Modality,
    issued: datetime | None = None,
) -> dict[str, Any]:
    """The transaction Bundle (a JSON-ready dict) of one result (see the module docstring).

    Args:
        measures: the values to report (volumes for a CT volume, areas for single images).
        source: the DICOM source (UIDs, headers), None for PNG / JPEG.
        model_name, model_version: the model that made the masks (the Device).
        modality: ``ct`` or ``cxr`` (the report's LOINC code).
        issued: the report's time (default now, UTC).

    Raises:
        ValueError: a measure that is not a finite number (a caller's bug).
    """
    when = (issued or datetime.now(UTC)).isoformat(timespec="seconds")
    subject = res.subject(source)
    entries: list[dict[str, Any]] = []
    device_url = res.url()
    device_id = f"{model_name}/{model_version}"
    entries.append(
        res.entry(
            device_url,
            {
                "resourceType": "Device",
                "identifier": [{"system": codes.DEVICE_SYSTEM, "value": device_id}],
                "manufacturer": "lungseg",
                "deviceName": [{"name": model_name, "type": "model-name"}],
                "version": [{"value": model_version}],
                "type": {"text": "lung and infection segmentation software (research use only)"},
                "note": [{"text": "Research use only, not a medical device."}],
            },
            if_none_exist=f"identifier={codes.DEVICE_SYSTEM}|{device_id}",
        )
    )
    study_url = None
    study = res.imaging_study(source, subject)
    if study is not None:
        study_url = res.url()
        entries.append(
            res.entry(
                study_url,
                study,
                if_none_exist=f"identifier={codes.DICOM_UID}|{study['identifier'][0]['value']}",
            )
        )
    observation_urls = []
    for side, values in (
        (None, measures),
        ("left", measures.left),
        ("right", measures.right),
    ):
        if values is None:
            continue
        for attribute, code, display, unit in _MEASURES:
            value = getattr(values, attribute)
            if value is None:
                continue
            url = res.url()
            observation_urls.append(url)
            entries.append(
                res.entry(
                    url,
                    res.observation(
                        code, display, unit, value, side, subject, when, device_url, study_url
                    ),
                )
            )
    report_code, report_display = codes.REPORT_CT if modality == "ct" else codes.REPORT_CXR
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [
            {"coding": [{"system": codes.V2_0074, "code": "RAD", "display": "Radiology"}]}
        ],
        "code": {
            "coding": [{"system": codes.LOINC, "code": report_code, "display": report_display}],
            "text": f"{report_display}: automated lung and infection measures",
        },
        "issued": when,
        "result": [{"reference": url, "type": "Observation"} for url in observation_urls],
        "conclusion": CONCLUSION.format(model=f"{model_name} {model_version}"),
    }
    if subject is not None:
        report["subject"] = subject
    if study_url is not None:
        report["imagingStudy"] = [{"reference": study_url, "type": "ImagingStudy"}]
    entries.insert(0, res.entry(res.url(), report))
    return {"resourceType": "Bundle", "type": "transaction", "timestamp": when, "entry": entries}
