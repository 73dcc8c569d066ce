"""POST /v1/segment end to end with real files: RLE via pycocotools, sizes, areas, frames."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from service.pipeline.metrics import dice
from tests.api.conftest import rle_to_mask

QU = "files/covid-qu-ex-layout/Val"


def post(client, path: Path, **params):
    with path.open("rb") as handle:
        return client.post("/v1/segment", params=params, files={"file": (path.name, handle)})


def reference(path: Path, folder: str) -> np.ndarray:
    mask_path = path.parent.parent / folder / path.name
    return cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127


def test_png_cxr_returns_pycocotools_rle_in_input_size(client, data_dir):
    image = next((data_dir / QU / "COVID-19" / "images").glob("*.png"))
    body = post(client, image).json()
    assert body["modality"] == "cxr"
    assert (body["height"], body["width"]) == (256, 256)
    lung = rle_to_mask(body["masks"]["lung"])
    infection = rle_to_mask(body["masks"]["infection"])
    assert lung.shape == infection.shape == (256, 256)
    assert body["lung_area_px"] == int(lung.sum())
    assert body["infection_area_px"] == int((infection & lung).sum())
    expected = 100 * body["infection_area_px"] / body["lung_area_px"]
    assert body["infection_percent"] == pytest.approx(expected)
    assert body["lung_area_mm2"] is None
    assert set(body["timings_ms"]) >= {"decode", "preprocess", "infer", "postprocess", "total"}
    assert "not a medical device" in body["disclaimer"]


def test_non_square_image_keeps_its_size_and_orientation(client, data_dir):
    image = sorted((data_dir / "cxr-covid19-gb" / "images").glob("*.png"))[0]
    height, width = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE).shape
    body = post(client, image).json()
    assert body["masks"]["lung"]["size"] == [height, width]
    lung = rle_to_mask(body["masks"]["lung"])
    transposed = cv2.resize(lung.T.astype(np.uint8), (width, height)) > 0
    ref = cv2.imread(str(image.parent.parent / "masks/lung" / image.name), 0) > 127
    assert dice(lung, ref) > dice(transposed, ref)


def test_unet_beats_threshold_on_real_images(client, data_dir):
    images = sorted((data_dir / QU / "COVID-19" / "images").glob("*.png"))
    scores: dict[str, list[float]] = {"unet": [], "threshold": []}
    for image in images:
        ref = reference(image, "lung masks")
        for model in scores:
            body = post(client, image, model=model).json()
            assert (body["model"]["kind"], body["fallback"]) == (model, None)
            scores[model].append(dice(rle_to_mask(body["masks"]["lung"]), ref))
    assert np.mean(scores["unet"]) > np.mean(scores["threshold"])
    assert np.mean(scores["unet"]) > 0.9


def test_ct_dicom_reports_physical_areas(client, data_dir):
    body = post(client, data_dir / "files/ct-series-chest-hu/1-33.dcm").json()  # a chest CT
    assert body["modality"] == "ct" and body["lung_found"]
    assert (body["height"], body["width"]) == (512, 512)
    ds = pydicom.dcmread(data_dir / "files/ct-series-chest-hu/1-33.dcm")
    pixel_mm2 = float(ds.PixelSpacing[0]) * float(ds.PixelSpacing[1])
    assert body["lung_area_px"] > 0
    assert body["lung_area_mm2"] == pytest.approx(body["lung_area_px"] * pixel_mm2)
    assert body["infection_area_mm2"] == pytest.approx(body["infection_area_px"] * pixel_mm2)


def test_monochrome1_cr_dicom(client, data_dir):
    body = post(client, data_dir / "files/dicom/RG1_J2KI.dcm").json()
    assert body["modality"] == "cxr"
    assert body["masks"]["lung"]["size"] == [1955, 1841]
    lung = rle_to_mask(body["masks"]["lung"])
    assert 0.05 < lung.mean() < 0.6


def test_multi_frame_dicom_gives_frames_and_totals(client, data_dir):
    body = post(client, data_dir / "files/dicom/eCT_Supplemental.dcm").json()
    assert body["n_frames"] == 2 and body["masks"] is None
    frames = body["frames"]
    assert [f["index"] for f in frames] == [0, 1]
    assert body["lung_area_px"] == sum(f["lung_area_px"] for f in frames)
    assert body["infection_area_px"] == sum(f["infection_area_px"] for f in frames)
    for frame in frames:
        assert rle_to_mask(frame["masks"]["lung"]).shape == (512, 512)


def test_png_format_matches_rle(client, data_dir):
    image = next((data_dir / QU / "Normal" / "images").glob("*.png"))
    rle_body = post(client, image).json()
    png_body = post(client, image, format="png").json()
    assert png_body["format"] == "png"
    for name in ("lung", "infection"):
        raw = np.frombuffer(base64.b64decode(png_body["masks"][name]), np.uint8)
        decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        assert set(np.unique(decoded)) <= {0, 255}
        np.testing.assert_array_equal(decoded > 0, rle_to_mask(rle_body["masks"][name]))


def test_png_sent_as_ct_uses_the_ct_model(client, data_dir):
    image = sorted((data_dir / "ct-covid19-majun" / "images").glob("*.png"))[0]
    body = post(client, image, modality="ct").json()
    assert body["modality"] == "ct"
    assert body["model"]["name"].endswith("-ct")


def test_threshold_model_reports_its_kind(client, data_dir):
    image = next((data_dir / QU / "Normal" / "images").glob("*.png"))
    body = post(client, image, model="threshold").json()
    assert body["model"] == {
        "name": "threshold-cxr",
        "version": body["model"]["version"],
        "kind": "threshold",
        "provider": "numpy",
    }
    assert body["fallback"] is None
