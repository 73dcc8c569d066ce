"""The coded concepts of lungseg's DICOM SEG segments and FHIR resources, with their sources.

DICOM (SEG, :mod:`service.encoders.dicom_seg`), from pydicom's tables of the DICOM standard
(``pydicom.sr.codedict.codes``, PS3.16), except where noted:

* lung: category SCT 91723000 "Anatomical Structure" (CID 7150 "Segmentation Property
  Categories" in pydicom 3.0: the standard replaced the older SCT 123037004, which SNOMED now
  names "Body structure", the top of its body-structure hierarchy), type SCT 39607008 "Lung"
  (CID 7151 / 7192); for split lungs the type modifier SCT 7771000 "Left" / 24028007 "Right"
  (CID 244 "Laterality"), as dcmqi and 3D Slicer write left / right lungs;
* infection: category SCT 49755003 "Morphologically Abnormal Structure" (CID 7150), type DCM
  112121 "Infiltrate" (CID 6104 "Abnormal Opacity Finding or Feature": it covers ground-glass
  opacity and consolidation, which the infection masks hold together; SNOMED's 47351003
  "Infiltrate" is in none of pydicom's or highdicom's tables, so it is not used), type modifier
  SCT 840539006 "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)",
  written with its SNOMED preferred term "COVID-19" (a DICOM Code Meaning holds at most 64
  characters; SNOMED CT International Edition, COVID-19 content of Jan 2020; not in pydicom's
  tables);
* algorithm family: DCM 123110 "Artificial Intelligence" (CID 7162).

FHIR R4 (:mod:`service.encoders.fhir`):

* report codes: LOINC 24627-2 "CT Chest" (the code of the FHIR specification's "Chest CT"
  examples) and LOINC 36643-5 "XR Chest 2 Views" (the FHIR specification's chest X-ray
  example code; LOINC has no code for a single frontal film that we could confirm, so the
  common chest X-ray report code is used);
* report category: v2-0074 ``RAD`` "Radiology"; observation category: observation-category
  ``imaging``;
* body sites: SCT 39607008 "Lung structure", 44029006 "Left lung structure", 3341006 "Right
  lung structure";
* the measures themselves (lung volume, infection volume, infection percent, lung area) have no
  LOINC code we could confirm: they are coded in lungseg's own code system
  :data:`MEASURE_SYSTEM` with a plain-words ``text``.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

SCT = "SCT"
DCM = "DCM"

ANATOMICAL_STRUCTURE = Code("91723000", SCT, "Anatomical Structure")
LUNG = Code("39607008", SCT, "Lung")
LEFT = Code("7771000", SCT, "Left")
RIGHT = Code("24028007", SCT, "Right")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", SCT, "Morphologically Abnormal Structure")
INFILTRATE = Code("112121", DCM, "Infiltrate")
COVID_19 = Code("840539006", SCT, "COVID-19")
ARTIFICIAL_INTELLIGENCE = Code("123110", DCM, "Artificial Intelligence")

# FHIR code systems
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DICOM_UID = "urn:dicom:uid"
RFC_3986 = "urn:ietf:rfc:3986"
MEASURE_SYSTEM = "https://github.com/lungseg/lungseg/fhir/CodeSystem/measure"
DEVICE_SYSTEM = "https://github.com/lungseg/lungseg/fhir/NamingSystem/model"

REPORT_CT = ("24627-2", "CT Chest")
REPORT_CXR = ("36643-5", "XR Chest 2 Views")
BODY_LUNG = ("39607008", "Lung structure")
BODY_LEFT_LUNG = ("44029006", "Left lung structure")
BODY_RIGHT_LUNG = ("3341006", "Right lung structure")
