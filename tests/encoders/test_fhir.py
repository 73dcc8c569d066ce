"""FHIR R4 output: the Bundle parses with the fhir.resources R4B models; codes, units, and
every reference pointing at an entry of the Bundle (the library does not check them)."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle

from service.encoders import encoder_for, seg_codes
from service.encoders.fhir import Measures, encode_fhir, fhir_bundle
from service.imaging import decode
from service.imaging.series import assemble_series
from service.imaging.types import SourceRef
from service.models.segmenter import Segmenter, SegmenterConfig
from tests.encoders.seg_helpers import read, series_files, to_bytes

MODEL = {"model_name": "unet-ct", "model_version": "2.0.0"}
VOLUME = Measures(
    lung_volume_ml=4210.5,
    infection_volume_ml=312.25,
    infection_percent=7.42,
    left=Measures(lung_volume_ml=1990.0, infection_volume_ml=200.0, infection_percent=10.05),
    right=Measures(lung_volume_ml=2220.5, infection_volume_ml=112.25, infection_percent=5.06),
)


def _source(data_dir: Path, name: str) -> SourceRef:
    source = decode(read(data_dir, name), max_pixels=80_000_000).source
    assert source is not None
    return source


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _checked(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Validate with the R4B models, check the transaction and the references; the resources
    by type."""
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "transaction"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    for entry in bundle["entry"]:
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == entry["resource"]["resourceType"]
    dangling = set(_references(bundle)) - set(urls)
    assert not dangling
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    for entry in bundle["entry"]:  # typed references point at a resource of that type
        for holder in _typed_references(entry["resource"]):
            assert by_url[holder["reference"]]["resourceType"] == holder["type"]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        kinds.setdefault(entry["resource"]["resourceType"], []).append(entry["resource"])
    assert len(kinds["DiagnosticReport"]) == 1 and len(kinds["Device"]) == 1
    return kinds


def _typed_references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "reference" in node and "type" in node:
            yield node
        for value in node.values():
            yield from _typed_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _typed_references(item)


def _measure(observation: dict[str, Any]) -> tuple[str, str]:
    return observation["code"]["coding"][0]["code"], observation["bodySite"]["coding"][0]["code"]


def test_volume_bundle(data_dir: Path) -> None:
    files = series_files(data_dir)
    volume = assemble_series(files, max_pixels=80_000_000)
    source = volume.source
    assert source is not None
    bundle = fhir_bundle(VOLUME, source=source, modality="ct", **MODEL)
    kinds = _checked(bundle)
    report = kinds["DiagnosticReport"][0]
    assert report["status"] == "preliminary"
    assert report["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
        "code": "RAD",
        "display": "Radiology",
    }
    assert report["code"]["coding"][0]["system"] == "http://loinc.org"
    assert report["code"]["coding"][0]["code"] == "24627-2"
    assert "not a medical device" in report["conclusion"]
    assert "Research use" in report["conclusion"]
    study = kinds["ImagingStudy"][0]
    assert study["identifier"] == [
        {"system": "urn:dicom:uid", "value": f"urn:oid:{source.study_uid}"}
    ]
    assert study["series"][0]["uid"] == source.series_uid
    assert study["series"][0]["numberOfInstances"] == 64
    assert {i["uid"] for i in study["series"][0]["instance"]} == set(source.instance_uids)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    assert by_url[report["imagingStudy"][0]["reference"]] is study
    patient_id = str(source.headers[0].PatientID)
    assert report["subject"] == {"type": "Patient", "identifier": {"value": patient_id}}
    assert study["subject"] == report["subject"]
    observations = kinds["Observation"]
    assert len(observations) == 9 == len(report["result"])
    got = {_measure(o): o["valueQuantity"] for o in observations}
    lung, left, right = "39607008", "44029006", "3341006"
    assert got[("lung-volume", lung)]["value"] == 4210.5
    assert got[("infection-percent", left)]["value"] == 10.05
    assert got[("infection-volume", right)]["value"] == 112.25
    for (code, _), quantity in got.items():
        assert quantity["system"] == "http://unitsofmeasure.org"
        assert quantity["code"] == quantity["unit"] == ("%" if "percent" in code else "mL")
    device = kinds["Device"][0]
    assert device["deviceName"] == [{"name": "unet-ct", "type": "model-name"}]
    assert device["version"] == [{"value": "2.0.0"}]
    for observation in observations:
        assert observation["status"] == "preliminary"
        assert observation["category"][0]["coding"][0]["code"] == "imaging"
        assert observation["category"][0]["coding"][0]["system"] == seg_codes.OBSERVATION_CATEGORY
        assert by_url[observation["device"]["reference"]] is device
        assert by_url[observation["derivedFrom"][0]["reference"]] is study
        assert observation["subject"] == report["subject"]
    conditional = {
        e["resource"]["resourceType"]: e["request"].get("ifNoneExist") for e in bundle["entry"]
    }
    assert conditional["ImagingStudy"] == f"identifier=urn:dicom:uid|urn:oid:{source.study_uid}"
    assert conditional["Device"].endswith("|unet-ct/2.0.0")


def test_single_radiograph_through_the_segmenter(data_dir: Path) -> None:
    """A CR with a usable Imager Pixel Spacing: lung and infection area in mm2, the percent."""
    ds = pydicom.dcmread(io.BytesIO(read(data_dir, "RG1_UNCR.dcm")))
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.15, 0.15]
    segmenter = Segmenter(SegmenterConfig(models_dir=None))
    result = segmenter.segment_bytes(to_bytes(ds), model="threshold", encoder=encoder_for("fhir"))
    encoded = result.encoded
    assert encoded is not None and encoded.media_type == "application/fhir+json"  # type: ignore[union-attr]
    bundle = json.loads(encoded.content)  # type: ignore[union-attr]
    kinds = _checked(bundle)
    report = kinds["DiagnosticReport"][0]
    assert report["code"]["coding"][0]["code"] == "36643-5"
    got = {_measure(o)[0]: o["valueQuantity"] for o in kinds["Observation"]}
    assert set(got) == {"lung-area", "infection-area", "infection-percent"}
    assert got["lung-area"]["code"] == "mm2"
    assert math.isclose(got["lung-area"]["value"], result.total.lung_area_mm2 or 0, abs_tol=0.01)
    assert math.isclose(
        got["infection-percent"]["value"], result.total.infection_percent, abs_tol=0.01
    )
    assert kinds["ImagingStudy"][0]["modality"][0]["code"] == "CR"


def test_unknown_spacing_reports_the_percent_only(data_dir: Path) -> None:
    segmenter = Segmenter(SegmenterConfig(models_dir=None))  # RG1: PixelSpacing 0\0
    result = segmenter.segment_bytes(
        read(data_dir, "RG1_UNCR.dcm"), model="threshold", encoder=encoder_for("fhir")
    )
    kinds = _checked(json.loads(result.encoded.content))  # type: ignore[union-attr]
    assert [_measure(o)[0] for o in kinds["Observation"]] == ["infection-percent"]


def test_png_has_no_study_and_no_subject(data_dir: Path) -> None:
    png = data_dir / "files/covid-qu-ex-layout/Val/COVID-19/images/covid_1902.png"
    segmenter = Segmenter(SegmenterConfig(models_dir=None))
    result = segmenter.segment_bytes(
        png.read_bytes(), model="threshold", encoder=encoder_for("fhir")
    )
    bundle = json.loads(result.encoded.content)  # type: ignore[union-attr]
    kinds = _checked(bundle)
    assert "ImagingStudy" not in kinds
    report = kinds["DiagnosticReport"][0]
    assert "subject" not in report and "imagingStudy" not in report
    assert all("subject" not in o and "derivedFrom" not in o for o in kinds["Observation"])


def test_no_patient_id_and_an_issuer_oid(data_dir: Path) -> None:
    ds = pydicom.dcmread(io.BytesIO(read(data_dir, "CT_small.dcm")))
    ds.PatientID = ""
    source = decode(to_bytes(ds), max_pixels=10**8).source
    kinds = _checked(fhir_bundle(VOLUME, source=source, modality="ct", **MODEL))
    assert "subject" not in kinds["DiagnosticReport"][0]
    assert kinds["ImagingStudy"][0]["subject"] == {
        "display": "patient not identified in the DICOM source"
    }
    ds.PatientID = "P-123"
    ds.IssuerOfPatientID = "2.16.756.5.30.1.149.1.2.1.1"
    source = decode(to_bytes(ds), max_pixels=10**8).source
    kinds = _checked(fhir_bundle(VOLUME, source=source, modality="ct", **MODEL))
    assert kinds["DiagnosticReport"][0]["subject"]["identifier"] == {
        "value": "P-123",
        "system": "urn:oid:2.16.756.5.30.1.149.1.2.1.1",
    }
    ds.IssuerOfPatientID = "HOSPITAL A"
    source = decode(to_bytes(ds), max_pixels=10**8).source
    kinds = _checked(fhir_bundle(VOLUME, source=source, modality="ct", **MODEL))
    identifier = kinds["Observation"][0]["subject"]["identifier"]
    assert identifier == {"value": "P-123", "assigner": {"display": "HOSPITAL A"}}


def test_anonymised_series_without_study_uid(data_dir: Path) -> None:
    first = next((data_dir / "files/ct-series-jpeg2000").iterdir())
    source = decode(first.read_bytes(), max_pixels=10**8).source
    assert source is not None and source.study_uid is None
    kinds = _checked(fhir_bundle(VOLUME, source=source, modality="ct", **MODEL))
    assert "ImagingStudy" not in kinds


def test_encoded_file_and_bad_values(data_dir: Path) -> None:
    issued = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    encoded = encode_fhir(
        VOLUME, source=_source(data_dir, "CT_small.dcm"), modality="ct", issued=issued, **MODEL
    )
    assert (encoded.format, encoded.media_type) == ("fhir", "application/fhir+json")
    bundle = json.loads(encoded.content)
    assert bundle["entry"][0]["resource"]["issued"] == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueError, match="finite"):
        fhir_bundle(Measures(infection_percent=float("nan")), source=None, modality="cxr", **MODEL)
