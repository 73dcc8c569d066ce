"""Warm start from the shipped ONNX models, and the 2.0.0 splits, on the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.datasets import read_set  # noqa: E402
from service.imaging import decode  # noqa: E402
from service.models.registry import latest_versions  # noqa: E402
from service.pipeline.params import PreprocessParams  # noqa: E402
from service.pipeline.preprocess import normalise, prepare  # noqa: E402
from training.config import CT_NEGATIVE_SERIES, job  # noqa: E402
from training.data import cache, hold_out, load_sample, make_splits, read_series  # noqa: E402
from training.networks import build  # noqa: E402
from training.warmstart import init_from_onnx  # noqa: E402

pytestmark = pytest.mark.train
REPO = Path(__file__).resolve().parents[2]
SHIPPED = {name: f"{name}/{path.name}" for name, path in latest_versions(REPO / "models").items()}
"""The models the service serves: the newest version of each (``unet-cxr/2.0.0``, ...)."""


def card(model: str) -> dict:
    return json.loads((REPO / "models" / model / "model.json").read_text())


@pytest.mark.parametrize("model", sorted(SHIPPED.values()))
def test_a_shipped_onnx_model_warm_starts_exactly(model: str, data_dir: Path) -> None:
    info = card(model)
    network = info["training"]["hyperparameters"]["network"]
    kind = network.pop("kind")
    pre = PreprocessParams.from_dict(info["preprocess"])
    spec = next(s for s in job(kind, info["modality"], "finetune").sets if s.role == "split")
    samples = read_set(data_dir / spec.name).samples
    rows = np.random.default_rng(0).choice(len(samples), 16, replace=False)
    images = cache([(samples[i], spec) for i in sorted(rows)], pre).images
    calibration = torch.from_numpy(normalise(images.astype(np.float32), pre)[:, None])
    net = build(kind, **{**network, "score_head": True})  # 1.x cards: no head in the graph
    error = init_from_onnx(net, REPO / "models" / model / "model.onnx", calibration)
    assert error < 1e-4


def test_the_ct_negative_series_is_prepared_as_the_service_does(data_dir: Path) -> None:
    series = read_series(data_dir / CT_NEGATIVE_SERIES, CT_NEGATIVE_SERIES)
    assert len(series.samples) == 64 and not any(s.covid for s in series.samples)
    assert series.samples[0].id == "1-01" and series.samples[-1].id == "1-64"  # cranial first
    spec = next(s for s in job("unet", "ct", "finetune").sets if s.name == CT_NEGATIVE_SERIES)
    _, held = hold_out(list(series.samples), spec, seed=42)
    assert len(held) == 21 and [s.id for s in held] == [f"1-{i}" for i in range(44, 65)]
    pre = PreprocessParams.from_dict(card(SHIPPED["unet-ct"])["preprocess"])
    sample = series.samples[30]
    image, masks, weights = load_sample(sample, pre, no_infection=spec.no_infection("x"))
    decoded = decode(sample.image.read_bytes())
    assert decoded.units == "hu"
    np.testing.assert_array_equal(image, prepare(decoded.frame(0), decoded.units, pre))
    assert weights.tolist() == [0.0, 1.0] and masks.sum() == 0  # lungs unsupervised
    assert spec.trains_decision(sample.finding)


def test_covidqu_holdout_is_a_stratified_tenth_of_train(data_dir: Path) -> None:
    spec = next(s for s in job("unet", "cxr", "finetune").sets if s.name == "cxr-covidqu")
    (split,) = make_splits(data_dir, [spec], 0.2, seed=42)
    classes = ("COVID-19", "Non-COVID", "Normal")
    held = {c: sum(s.finding == c for s in split.holdout) for c in classes}
    train = {c: sum(s.finding == c for s in split.train) for c in classes}
    assert held == {"COVID-19": 184, "Non-COVID": 93, "Normal": 93}
    assert train == {"COVID-19": 1653, "Non-COVID": 839, "Normal": 839}
    assert len(split.val) == 919 and all(s.split == "Val" for s in split.val)
    ids = [{s.id for s in side} for side in (split.train, split.val, split.holdout)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = make_splits(data_dir, [spec], 0.2, seed=42)[0]
    assert [s.id for s in again.holdout] == [s.id for s in split.holdout]
