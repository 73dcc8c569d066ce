"""Shipped models under ``models/``: they load (sha256 verified) and beat the threshold baseline.

One base class holds the checks (smp style); each shipped model is a subclass of a few lines.
Only ONNX Runtime is needed (no torch): this is what the service runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from service.benchmark.evaluate import evaluate
from service.datasets import Sample, read_set
from service.imaging import decode
from service.models.card import ONNX_FILE, sha256_of
from service.models.onnx_backend import OnnxBackend
from service.models.registry import latest_versions
from service.models.threshold import ThresholdBackend
from service.pipeline.run import run
from tests.conftest import REPO_ROOT

MODELS_DIR = REPO_ROOT / "models"
MAX_ONNX_BYTES = 10 * 1024 * 1024


def mean_lung_dice(backend: object, samples: list[Sample]) -> float:
    """Mean lung Dice of ``backend`` on ``samples`` (the benchmark's own scoring)."""
    rows = evaluate(backend, samples)  # type: ignore[arg-type]
    return float(np.mean([r.lung.dice for r in rows if r.lung is not None]))


class ShippedModel:
    """Checks every shipped model must pass; subclasses set ``name`` and the test images."""

    name: ClassVar[str] = ""
    modality: ClassVar[str] = "cxr"
    min_lung_dice: ClassVar[float] = 0.9

    @pytest.fixture(scope="class")
    @classmethod
    def directory(cls) -> Path:
        found = latest_versions(MODELS_DIR).get(cls.name)
        if found is None:
            pytest.skip(f"{cls.name} is not shipped under {MODELS_DIR}")
        return found

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, directory: Path) -> OnnxBackend:
        return OnnxBackend(directory, intra_op_threads=2, verify_sha256=True)

    def samples(self, data_dir: Path, directory: Path) -> list[Sample]:
        """Real labelled images never trained on (CXR: COVID-QU-Ex Val fixture)."""
        fixture = read_set(data_dir / "files" / "covid-qu-ex-layout")
        return [s for s in fixture.samples if s.finding in ("COVID-19", "Normal")][:6]

    def test_card_describes_the_model(self, backend: OnnxBackend, directory: Path) -> None:
        card = backend.card
        assert card.name == self.name and card.modality == self.modality
        assert card.sha256 == sha256_of(directory / ONNX_FILE)
        assert (directory / ONNX_FILE).stat().st_size < MAX_ONNX_BYTES
        for key in ("training", "metrics", "license", "intended_use", "git", "export"):
            assert key in card.provenance, key
        assert "not a medical device" in card.provenance["intended_use"].lower()
        assert (directory / card.provenance["training"]["split"]["ids_file"]).is_file()

    def test_outputs_probabilities_of_the_card_shape(self, backend: OnnxBackend) -> None:
        frame = np.random.default_rng(0).random((300, 240), dtype=np.float32)
        (prediction,) = backend.infer([backend.prepare(frame, "display")])
        probs = prediction.probabilities
        assert probs is not None and prediction.masks is None
        assert probs.shape == (2, *backend.card.preprocess.size) and probs.dtype == np.float32
        assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0

    def test_segments_real_images_better_than_thresholding(
        self, backend: OnnxBackend, directory: Path, data_dir: Path
    ) -> None:
        samples = self.samples(data_dir, directory)
        assert samples
        model = mean_lung_dice(backend, samples)
        baseline = mean_lung_dice(ThresholdBackend(self.modality), samples)  # type: ignore[arg-type]
        assert model > baseline and model >= self.min_lung_dice, (model, baseline)


class CtModel(ShippedModel):
    """CT models are tested on every slice of their own validation groups (``split.json``: 54
    slices of 2 patients; a subset of 6 is too few to tell models 0.01 apart)."""

    modality: ClassVar[str] = "ct"

    def samples(self, data_dir: Path, directory: Path) -> list[Sample]:
        split = json.loads((directory / "split.json").read_text())["sets"]["ct-covid19-majun"]
        val = set(split["val"])
        majun = read_set(data_dir / "ct-covid19-majun")
        return [s for s in majun.samples if s.id in val]

    def test_runs_on_dicom_ct_in_hu(self, backend: OnnxBackend, data_dir: Path) -> None:
        """The HU path (card window, min-max, CLAHE) runs on a real DICOM CT slice."""
        first = sorted((data_dir / "files" / "ct-series-jpeg2000").iterdir())[0]
        image = decode(first.read_bytes())
        assert image.units == "hu"
        (result,) = run(backend, image)
        assert result.masks.lung.shape == (image.height, image.width)


class TestUnetCxr(ShippedModel):
    name = "unet-cxr"
    min_lung_dice = 0.93


class TestCnnCxr(ShippedModel):
    name = "cnn-cxr"
    min_lung_dice = 0.88


class TestUnetCt(CtModel):
    name = "unet-ct"
    min_lung_dice = 0.9


class TestCnnCt(CtModel):
    name = "cnn-ct"
    min_lung_dice = 0.85


def test_every_shipped_model_has_a_test_class() -> None:
    tested = {cls.name for base in (ShippedModel, CtModel) for cls in base.__subclasses__()}
    assert set(latest_versions(MODELS_DIR)) <= tested
