"""Execution provider choice, CUDA fallback detection, GPU batch buckets and per-worker cores.

The CI machine has no GPU: these tests use ONNX Runtime's CPU build, which is exactly where a
session asked for CUDA silently runs on the CPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from service import cpus
from service.api.settings import Settings
from service.errors import ModelLoadError
from service.models import onnx_backend
from service.models.onnx_backend import CPU, CPU_RUN, CUDA, OnnxBackend, bucket, choose_providers
from service.models.registry import latest_versions
from service.models.segmenter import Segmenter, SegmenterConfig
from tests.conftest import REPO_ROOT

UNET = latest_versions(REPO_ROOT / "models")["unet-cxr"]


def test_buckets_are_powers_of_two_up_to_the_largest_batch() -> None:
    assert [bucket(n, 32) for n in (1, 2, 3, 5, 8, 9, 17, 32)] == [1, 2, 4, 8, 8, 16, 32, 32]
    assert bucket(33, 32) == 33  # larger batches are split by the caller, never padded


def test_without_cuda_auto_is_cpu_and_cuda_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_backend.ort, "get_available_providers", lambda: [CPU])
    assert choose_providers("auto") == [CPU]
    assert choose_providers("cpu") == [CPU]
    with pytest.raises(ModelLoadError, match="LUNGSEG_PROVIDERS=cpu"):
        choose_providers("cuda")


def test_with_cuda_auto_falls_back_and_cuda_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_backend.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(onnx_backend.ort, "preload_dlls", lambda: None, raising=False)
    assert choose_providers("auto") == [CUDA, CPU]
    assert choose_providers("cuda") == [CUDA]
    assert choose_providers("cpu") == [CPU]


def test_a_silent_fallback_to_the_cpu_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        backend = OnnxBackend(UNET, [CUDA, CPU], intra_op_threads=1)
    assert backend.provider == CPU
    assert backend.max_batch == 1  # no GPU padding on the CPU
    assert "asked for CUDAExecutionProvider" in caplog.text


def test_cuda_alone_refuses_to_run_on_the_cpu() -> None:
    with pytest.raises(ModelLoadError, match="asked for CUDAExecutionProvider"):
        OnnxBackend(UNET, [CUDA], intra_op_threads=1)


def test_workers_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "usable_cores", lambda root=cpus.CGROUP_ROOT: 16)
    one = Settings(workers=1)
    four = Settings(workers=4)
    assert (one.cores, one.in_flight_limit, one.threads_per_inference) == (16, 16, 1)
    assert (four.cores, four.in_flight_limit, four.queue_limit) == (4, 4, 16)
    assert Settings(workers=32).cores == 1
    assert Settings(workers=4, max_in_flight=2).threads_per_inference == 2


def test_padded_bound_batches_give_the_unpadded_results() -> None:
    """The GPU batching path (split, pad to a bucket, IO binding), run on the CPU provider."""
    backend = OnnxBackend(UNET, [CPU], intra_op_threads=1)
    rng = np.random.default_rng(0)
    inputs = [rng.random((1, 256, 256), dtype=np.float32) for _ in range(6)]
    plain = backend.infer(inputs)
    backend.max_batch = 4  # what a CUDA backend gets: 6 inputs run as 4 + 2, 3 pads to 4
    assert [bucket(n, 4) for n in (1, 2, 3, 4)] == [1, 2, 4, 4]
    batched = backend.infer(inputs)
    three = backend.infer(inputs[:3])
    assert len(batched) == 6 and len(three) == 3
    for a, b in zip(plain + plain[:3], batched + three, strict=True):
        assert a.probabilities.shape == b.probabilities.shape == (2, 256, 256)
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_a_model_that_fails_its_warm_up_falls_back_to_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: OnnxBackend) -> None:
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(OnnxBackend, "warm_up", broken)
    segmenter = Segmenter(SegmenterConfig(UNET.parents[1], "cpu", batch_window_ms=1.0))
    try:
        assert "unet-cxr" not in segmenter.registry.models
        assert "warm-up failed" in segmenter.registry.unavailable["unet-cxr"]
        backend, fallback = segmenter.backend_for("unet", "cxr")
        assert backend.info.kind == "threshold"
        assert fallback is not None and "warm-up failed" in fallback
    finally:
        segmenter.close()


def test_many_frames_run_on_the_cpu_in_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = OnnxBackend(UNET, [CPU], intra_op_threads=1)
    rng = np.random.default_rng(1)
    inputs = [rng.random((1, 256, 256), dtype=np.float32) for _ in range(CPU_RUN + 3)]
    one_by_one = [backend.infer([x])[0] for x in inputs]
    sizes: list[int] = []
    run = backend.session.run

    def recording(outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        sizes.append(len(next(iter(feed.values()))))
        return run(outputs, feed)

    monkeypatch.setattr(backend.session, "run", recording)
    together = backend.infer(inputs)
    assert sizes == [CPU_RUN, 3]
    for a, b in zip(one_by_one, together, strict=True):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)
