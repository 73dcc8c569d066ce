"""End to end against a real PACS (Orthanc + DICOMweb): STOW the real 64-slice chest series,
retrieve it, assemble and segment it (threshold), STOW the SEG back, find it by QIDO,
retrieve it and check its references and masks."""

from __future__ import annotations

import io
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from service.dicomweb import DicomwebClient, DicomwebConfig
from service.encoders.dicom_seg import encode_seg, in_source_order
from service.errors import PacsError, PacsNotFoundError, PacsTooLargeError
from service.imaging.series import assemble_series
from service.imaging.types import DecodedImage
from tests.encoders.seg_helpers import series_files, threshold_masks
from tests.pacs import OrthancServer

MAX_PIXELS = 80_000_000


def _config(orthanc: OrthancServer, **settings: object) -> DicomwebConfig:
    values: dict[str, object] = {
        "base_url": orthanc.dicomweb_url,
        "username": orthanc.user,
        "password": orthanc.password,
        "retries": 1,
        "backoff_s": 0.1,
    }
    values.update(settings)
    return DicomwebConfig(**values)  # type: ignore[arg-type]


def test_orthanc_starts_quickly(orthanc: OrthancServer) -> None:
    assert orthanc.started_s < 30


def test_wrong_password_is_refused(orthanc: OrthancServer) -> None:
    client = DicomwebClient(_config(orthanc, password="wrong"))
    with client, pytest.raises(PacsError, match="credentials") as caught:
        client.find_series("1.2.3")
    assert caught.value.status == 401 and caught.value.retryable is False


def test_unknown_series(orthanc: OrthancServer) -> None:
    with DicomwebClient(_config(orthanc)) as client:
        assert client.find_series("1.2.3.4") == []
        with pytest.raises(PacsNotFoundError):
            client.retrieve_series("1.2.3.4", "1.2.3.5")


def test_series_through_the_pacs_and_its_seg_back(orthanc: OrthancServer, data_dir: Path) -> None:
    files = series_files(data_dir)
    assert len(files) == 64
    first = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    total = sum(len(f) for f in files)
    with DicomwebClient(_config(orthanc)) as client:
        began = time.monotonic()
        receipt = client.store(files)
        stow_s = time.monotonic() - began
        assert receipt.status == 200 and receipt.complete and len(receipt.stored) == 64
        found = client.find_series(study)
        assert [(s.series_uid, s.modality, s.instances) for s in found] == [(series, "CT", 64)]

    small = DicomwebClient(_config(orthanc, max_bytes=total // 2))
    with small, pytest.raises(PacsTooLargeError, match="max_bytes"):
        small.retrieve_series(study, series)

    with DicomwebClient(_config(orthanc, max_bytes=2 * total)) as client:
        began = time.monotonic()
        retrieved = client.retrieve_series(study, series)
        wado_s = time.monotonic() - began
        assert len(retrieved) == 64
        assert sorted(retrieved) == sorted(files)  # as stored, byte for byte

        volume = assemble_series(retrieved, max_pixels=MAX_PIXELS)
        source = volume.source
        assert source is not None and volume.shape[0] == 64
        hu = np.ascontiguousarray(in_source_order(volume, volume.voxels))
        image = DecodedImage(
            pixels=hu,
            units="hu",
            modality="ct",
            source_format="dicom",
            spacing_mm=volume.spacing_mm[1:],
            source=source,
        )
        lung, infection = threshold_masks(image)
        assert lung.sum() > 0
        seg = encode_seg(
            source,
            lung=lung,
            infection=infection,
            model_name="threshold-ct",
            model_version="1.0.0",
        )
        stored = client.store([seg.content])
        assert stored.complete
        kinds = {s.modality: s for s in client.find_series(study)}
        assert set(kinds) == {"CT", "SEG"} and kinds["SEG"].instances == 1
        back = client.retrieve_series(study, kinds["SEG"].series_uid)
        assert back == [seg.content]

    segmentation = hd.seg.segread(io.BytesIO(back[0]))
    assert {u[2] for u in segmentation.get_source_image_uids()} == set(source.instance_uids)
    pixels = segmentation.get_pixels_by_source_instance(list(source.instance_uids))
    assert np.array_equal(pixels[..., 0].astype(bool), lung)
    assert np.array_equal(pixels[..., 1].astype(bool), infection)
    print(f"STOW 64 slices ({total / 2**20:.1f} MiB): {stow_s:.2f} s, WADO: {wado_s:.2f} s")
