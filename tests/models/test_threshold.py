"""The threshold segmenter on arrays drawn in the test, and on two real images of the data set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from service.datasets import load_image, load_mask, read_set
from service.imaging.types import DecodedImage, Modality, Units
from service.models.base import Backend
from service.models.threshold import ThresholdBackend
from service.pipeline.metrics import dice
from service.pipeline.postprocess import Masks
from service.pipeline.run import run as run_pipeline

N = 256


def run(backend: ThresholdBackend, frame: np.ndarray, units: Units = "display") -> Masks:
    image = DecodedImage(frame[np.newaxis].astype(np.float32), units, None, "png")
    (result,) = run_pipeline(backend, image)
    return result.masks


def ellipse(center: tuple[float, float], axes: tuple[float, float]) -> np.ndarray:
    """Bool (N, N) filled ellipse; centre and half-axes as fractions of N (x, y)."""
    mask = np.zeros((N, N), np.uint8)
    c = (round(center[0] * N), round(center[1] * N))
    a = (round(axes[0] * N), round(axes[1] * N))
    cv2.ellipse(mask, c, a, 0, 0, 360, 1, -1)
    return mask.astype(bool)


BODY = ellipse((0.5, 0.5), (0.42, 0.3))
LUNGS = ellipse((0.3, 0.5), (0.13, 0.2)) | ellipse((0.7, 0.5), (0.13, 0.2))
BLOB = ellipse((0.3, 0.45), (0.05, 0.05))


def ct_hu() -> np.ndarray:
    """Axial slice in HU: air -1000, body 40, lungs -850, a -300 HU lesion in the right lung."""
    hu = np.full((N, N), -1000.0, np.float32)
    hu[BODY] = 40.0
    hu[LUNGS] = -850.0
    hu[BLOB] = -300.0
    return hu


def components(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_is_a_backend() -> None:
    backend: Backend = ThresholdBackend("ct")
    assert backend.info.name == "threshold-ct"
    assert backend.info.kind == "threshold"
    assert backend.info.version == "1.0.0"
    assert backend.provider == "numpy"
    assert ThresholdBackend("cxr").info.name == "threshold-cxr"


def test_invalid_config() -> None:
    with pytest.raises(ValueError, match="modality"):
        ThresholdBackend("mr")  # type: ignore[arg-type]


def test_prepare_shrinks_and_keeps_the_units() -> None:
    backend = ThresholdBackend("cxr")
    prepared = backend.prepare(np.full((1024, 800), 0.5, np.float32), "display")
    assert prepared.frame.shape == (256, 200)
    assert prepared.frame.dtype == np.float32
    assert prepared.in_hu is False
    small = ThresholdBackend("ct").prepare(np.full((100, 120), -1000.0, np.float32), "hu")
    assert small.frame.shape == (100, 120)  # never enlarged
    assert small.in_hu is True
    assert np.all(small.frame == -1000.0)


def test_infer_gives_masks_not_probabilities() -> None:
    backend = ThresholdBackend("ct")
    out = backend.infer([backend.prepare(ct_hu(), "hu"), backend.prepare(ct_hu()[:200], "hu")])
    assert [p.masks.shape for p in out if p.masks is not None] == [(2, N, N), (2, 200, N)]
    assert all(p.probabilities is None and p.score is None for p in out)
    assert all(p.masks.dtype == bool for p in out if p.masks is not None)
    assert not (out[0].masks[1] & ~out[0].masks[0]).any()  # infection inside the lung


def test_ct_hu_lungs_and_lesion() -> None:
    masks = run(ThresholdBackend("ct"), ct_hu(), "hu")
    assert dice(masks.lung, LUNGS) > 0.95
    assert components(masks.lung) == 2
    assert not (masks.lung & ~BODY).any()
    assert dice(masks.infection, BLOB) > 0.9
    assert not (masks.infection & ~BLOB).any()


def test_ct_display_lungs_and_lesion() -> None:
    windowed = np.clip((ct_hu() + 1350.0) / 1500.0, 0.0, 1.0)  # lung window -600 / 1500
    masks = run(ThresholdBackend("ct"), windowed)
    assert dice(masks.lung, LUNGS) > 0.95
    assert dice(masks.infection, BLOB) > 0.9
    assert not (masks.infection & ~LUNGS).any()


def test_ct_healthy_lungs_have_no_infection() -> None:
    hu = ct_hu()
    hu[BLOB] = -850.0
    masks = run(ThresholdBackend("ct"), hu, "hu")
    assert dice(masks.lung, LUNGS) > 0.95
    assert not masks.infection.any()


def test_ct_small_air_pockets_are_not_lung() -> None:
    hu = np.full((N, N), -1000.0, np.float32)
    hu[BODY] = 40.0
    hu[ellipse((0.5, 0.5), (0.03, 0.03))] = -1000.0  # bowel gas, about 0.7 % of the body
    assert not run(ThresholdBackend("ct"), hu, "hu").lung.any()


def cxr() -> tuple[np.ndarray, np.ndarray]:
    """Synthetic frontal CXR: dark background, bright thorax, two dark lung fields, noise."""
    image = np.full((N, N), 0.05, np.float32)
    image[ellipse((0.5, 0.55), (0.45, 0.5))] = 0.75
    lungs = ellipse((0.32, 0.45), (0.12, 0.25)) | ellipse((0.68, 0.45), (0.12, 0.25))
    image[lungs] = 0.3
    noise = np.random.default_rng(0).normal(0.0, 0.02, image.shape).astype(np.float32)
    return np.clip(image + noise, 0.0, 1.0), lungs


def test_cxr_two_lungs() -> None:
    image, lungs = cxr()
    masks = run(ThresholdBackend("cxr"), image)
    assert components(masks.lung) == 2
    assert dice(masks.lung, lungs) > 0.9
    assert not (masks.lung & ~ellipse((0.5, 0.55), (0.45, 0.5))).any()
    left = masks.lung[:, : N // 2].sum()
    right = masks.lung[:, N // 2 :].sum()
    assert 0.8 < left / right < 1.25


@pytest.mark.parametrize("modality", ["cxr", "ct"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_blank_display_images_give_empty_masks(modality: Modality, value: float) -> None:
    masks = run(ThresholdBackend(modality), np.full((N, 200), value, np.float32))
    assert masks.lung.shape == (N, 200)
    assert masks.lung.dtype == bool
    assert not masks.lung.any()
    assert not masks.infection.any()


@pytest.mark.parametrize("value", [-1000.0, 1000.0, np.nan])
def test_blank_hu_slices_give_empty_masks(value: float) -> None:
    masks = run(ThresholdBackend("ct"), np.full((N, N), value, np.float32), "hu")
    assert not masks.lung.any()
    assert not masks.infection.any()


# Lung Dice measured on these images with version 1.0.0: 0.893 (CXR) and 0.945 (CT slice).
@pytest.mark.parametrize(
    ("set_name", "sample_id", "floor"),
    [("cxr-shenzhen", "CHNCXR_0004_0", 0.85), ("ct-covid19-majun", "slice-0120", 0.90)],
)
def test_real_image_lung_dice(data_dir: Path, set_name: str, sample_id: str, floor: float) -> None:
    labelled = read_set(data_dir / set_name)
    (sample,) = [s for s in labelled.samples if s.id == sample_id]
    image = load_image(sample)
    backend = ThresholdBackend(sample.modality)
    masks = run(backend, image.frame(0), image.units)
    reference = load_mask(sample.lung, masks.lung.shape)
    assert reference is not None
    assert dice(masks.lung, reference) > floor
