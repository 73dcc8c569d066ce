"""Every decoded DICOM carries a SourceRef; none of its identifiers reaches a repr or str."""

from __future__ import annotations

from service.imaging import decode
from tests.conftest import FIXTURES_DIR


def test_a_dicom_source_has_its_uids_and_a_header_without_pixels():
    data = (FIXTURES_DIR / "CT_small.dcm").read_bytes()
    image = decode(data)
    source = image.source
    assert source is not None and source.format == "dicom"
    (header,) = source.headers
    assert "PixelData" not in header and header.Rows == 128
    assert source.instance_uids == (str(header.SOPInstanceUID),)
    assert source.study_uid == str(header.StudyInstanceUID)
    assert source.series_uid == str(header.SeriesInstanceUID)
    assert source.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert source.modality_code == "CT"
    text = repr(source) + str(source) + repr(image)
    for identifier in (*source.instance_uids, source.study_uid, str(header.PatientName)):
        assert identifier not in text
    assert repr(source) == "SourceRef(dicom, 1 instance(s))"


def test_png_and_jpeg_have_no_source():
    assert decode((FIXTURES_DIR / "cxr_covid_1902.png").read_bytes()).source is None


def test_the_header_is_a_copy_the_decoded_dataset_keeps_its_pixels():
    import pydicom

    from service.imaging.source import header_of

    ds = pydicom.dcmread(FIXTURES_DIR / "CT_small.dcm")
    header = header_of(ds)
    assert "PixelData" in ds and "PixelData" not in header
    header.PatientName = "Changed^In^Copy"
    assert ds.PatientName != "Changed^In^Copy"
    assert header.SOPInstanceUID == ds.SOPInstanceUID


def test_the_header_keeps_an_unparseable_value_unparsed_and_the_seg_leaves_it_out():
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from service.encoders.seg_sources import prepare_headers
    from service.imaging.source import dicom_source, header_of

    ds = pydicom.dcmread(FIXTURES_DIR / "CT_small.dcm")
    planes = Tag(0x0028, 0x0012)  # US with 3 bytes: pydicom raises when it parses it
    ds[planes] = RawDataElement(planes, "US", 3, b"\x01\x02\x03", 0, False, True)
    header = header_of(ds)  # parses nothing, so it does not raise
    assert planes in header and "PixelData" not in header
    (prepared,) = prepare_headers(dicom_source(ds), [header])
    assert planes not in prepared and prepared.Rows == 128
