"""No lung where there is none (issue 13): the non-chest real files of the data and synthetic
blank, tiny and photo-like inputs give ``lung_found`` false, empty masks, a null percentage
and a reason, with every model kind."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from service.models.segmenter import Segmenter, SegmenterConfig
from tests.conftest import REPO_ROOT

KINDS = ("unet", "cnn", "threshold")
NOT_A_CHEST = ("dicom/693_UNCR.dcm", "dicom/693_J2KR.dcm", "dicom/eCT_Supplemental.dcm")
"""A head CT (uncompressed and JPEG 2000) and a brain CT (enhanced, 2 frames)."""


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(SegmenterConfig(REPO_ROOT / "models", providers="cpu"))


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def synthetic() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    photo = np.stack(  # a colour photograph-like scene: sky gradient, a sun, noise
        [np.tile(ramp, (480, 1)), np.tile(ramp[::-1], (480, 1)), np.full((480, 640), 90.0)], -1
    )
    cv2.circle(photo, (480, 120), 60, (40, 220, 255), -1)
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    return {
        "blank 8900x8900": png(np.full((8900, 8900), 200, np.uint8)),
        "1x1": png(np.full((1, 1), 128, np.uint8)),
        "16x16": png(rng.integers(0, 255, (16, 16), dtype=np.uint8)),
        "photograph": cv2.imencode(".jpg", photo)[1].tobytes(),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", NOT_A_CHEST)
def test_head_and_brain_ct_have_no_lung(segmenter, data_dir: Path, name, kind):
    result = segmenter.segment_bytes((data_dir / "files" / name).read_bytes(), model=kind)
    assert not result.lung_found and not result.infection_detected
    assert result.total.lung_area_px == 0 and result.total.infection_percent is None
    assert result.warnings and all("no lung found" in w for w in result.warnings)


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_non_chest_inputs_have_no_lung(segmenter, kind):
    for name, data in synthetic().items():
        result = segmenter.segment_bytes(data, model=kind)
        assert not result.lung_found, (name, kind)
        assert result.total.infection_percent is None and result.warnings, (name, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_an_upper_abdomen_series_has_no_lung(segmenter, data_dir: Path, kind):
    files = sorted((data_dir / "files" / "ct-series-jpeg2000").iterdir())
    result = segmenter.segment_volume(segmenter.load_volume([f.read_bytes() for f in files]), kind)
    assert not result.lung_found and not result.infection_detected
    assert any("no lung of a plausible size" in w for w in result.warnings)
    # as for an image: no mask, no volume, no percentage of a lung that is not there
    assert not result.labels.any() and result.lung_volume_ml == 0
    assert result.infection_percent is None
    assert result.lungs.left.infection_percent is None and result.lungs.split == "none"
