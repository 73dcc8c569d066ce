"""The contract every Backend keeps (threshold, ONNX Runtime, the micro-batcher): one generic
test base, a few lines per backend (segmentation_models_pytorch style)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from service.imaging.types import DecodedImage
from service.models.batching import MicroBatcher
from service.models.onnx_backend import CPU, OnnxBackend
from service.models.registry import latest_versions
from service.models.threshold import ThresholdBackend
from service.pipeline.run import run
from tests.conftest import REPO_ROOT

MODELS = latest_versions(REPO_ROOT / "models")


def frames(units: str) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    if units == "hu":
        return [rng.uniform(-1000, 400, (96, 80)).astype(np.float32) for _ in range(3)]
    return [rng.random((120, 100), dtype=np.float32) for _ in range(3)]


class BackendContract:
    """Subclasses give ``make()`` and the modality; every test here applies to each."""

    modality: ClassVar[str] = "cxr"

    def make(self) -> Any:
        raise NotImplementedError

    @pytest.fixture
    def backend(self) -> Iterator[Any]:
        made = self.make()
        yield made
        if hasattr(made, "close"):
            made.close()

    @property
    def units(self) -> str:
        return "hu" if self.modality == "ct" else "display"

    def test_identity(self, backend: Any) -> None:
        info = backend.info
        assert info.modality == self.modality and info.name and info.version and info.kind
        assert isinstance(backend.provider, str) and backend.precision in ("fp32", "int8", "fp16")

    def test_one_prediction_per_input_in_order(self, backend: Any) -> None:
        inputs = [backend.prepare(f, self.units) for f in frames(self.units)]
        out = backend.infer(inputs)
        again = [backend.infer([x])[0] for x in inputs]
        assert len(out) == len(inputs)
        for together, alone in zip(out, again, strict=True):
            assert (together.probabilities is None) != (together.masks is None)
            maps = together.probabilities if together.probabilities is not None else together.masks
            assert maps.ndim == 3 and maps.shape[0] == 2
            if together.probabilities is not None:
                assert maps.dtype == np.float32 and maps.min() >= 0.0 and maps.max() <= 1.0
                np.testing.assert_allclose(maps, alone.probabilities, atol=1e-5)
            else:
                assert maps.dtype == bool and np.array_equal(maps, alone.masks)
            assert together.score is None or 0.0 <= together.score <= 1.0

    def test_the_pipeline_gives_masks_of_the_input_size(self, backend: Any) -> None:
        pixels = np.stack(frames(self.units))
        image = DecodedImage(pixels, self.units, self.modality, "dicom")  # type: ignore[arg-type]
        results = run(backend, image)
        assert len(results) == 3
        for result in results:
            assert result.masks.lung.shape == pixels.shape[1:] and result.masks.lung.dtype == bool
            assert not (result.masks.infection & ~result.masks.lung).any()


class TestThresholdCxr(BackendContract):
    def make(self) -> Any:
        return ThresholdBackend("cxr")


class TestThresholdCt(BackendContract):
    modality = "ct"

    def make(self) -> Any:
        return ThresholdBackend("ct")


class TestOnnxUnetCxr(BackendContract):
    def make(self) -> Any:
        return OnnxBackend(MODELS["unet-cxr"], [CPU], intra_op_threads=1, precision="auto")


class TestOnnxCnnCt(BackendContract):
    modality = "ct"

    def make(self) -> Any:
        return OnnxBackend(MODELS["cnn-ct"], [CPU], intra_op_threads=1)


class TestMicroBatcher(BackendContract):
    def make(self) -> Any:
        model = OnnxBackend(MODELS["unet-cxr"], [CPU], intra_op_threads=1)
        return MicroBatcher(model, window_ms=1.0, max_batch=4)
