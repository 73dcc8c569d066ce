"""Export: ONNX graph, checker, ORT-vs-torch parity at another size, the model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from export.onnx_export import INPUT_NAME, OUTPUT_NAME, check, parity, parity_shape, to_onnx  # noqa: E402
from export.run import export_run  # noqa: E402
from service.models.card import ONNX_FILE, read_card, sha256_of  # noqa: E402
from service.models.onnx_backend import OnnxBackend  # noqa: E402
from service.pipeline.params import PreprocessParams  # noqa: E402
from tests.test_training import make_set, tiny_config  # noqa: E402
from training.loop import train_job  # noqa: E402
from training.networks import build  # noqa: E402

pytestmark = pytest.mark.train


@pytest.mark.parametrize("kind", ["unet", "cnn"])
def test_onnx_graph_is_valid_dynamic_and_matches_torch(kind: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build(kind, base_channels=4, depth=3).eval()
    path = tmp_path / "model.onnx"
    to_onnx(net, path, (64, 64))
    check(path)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [OUTPUT_NAME]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, "height", "width"]
    assert graph.node[-1].op_type == "Sigmoid"  # the graph returns probabilities
    shape = parity_shape((64, 64), 8)
    assert shape[2:] != (64, 64) and shape[0] == 2
    result = parity(net, path, shape, atol=1e-4)
    assert result.max_abs_diff <= 1e-4


def test_export_run_writes_a_card_the_service_loads(tmp_path: Path) -> None:
    data = make_set(tmp_path / "data" / "synthetic", size=64).parent
    run_dir = tmp_path / "runs" / "unet-cxr"
    config = tiny_config("synthetic", epochs=1, preprocess=PreprocessParams(size=(64, 64)))
    train_job(config, data, run_dir)
    card = export_run(run_dir, data, tmp_path / "models", repo=Path(__file__).parent)
    target = tmp_path / "models" / "unet-cxr" / "0.0.1"
    assert card.sha256 == sha256_of(target / ONNX_FILE)
    loaded = read_card(target)
    assert loaded == card and loaded.labels == ("lung", "infection")
    assert loaded.preprocess == config.preprocess and loaded.postprocess == config.postprocess
    raw = json.loads((target / "model.json").read_text())
    for key in (
        "training",
        "metrics",
        "license",
        "git",
        "intended_use",
        "export",
        "medical_device",
    ):
        assert key in raw, key
    assert raw["training"]["split"]["seed"] == config.seed
    assert (target / raw["training"]["split"]["ids_file"]).is_file()
    assert raw["export"]["parity"]["max_abs_diff"] <= 1e-4
    scores = raw["metrics"]["synthetic"]
    assert scores["model"]["all"]["lung"]["dice"]["n"] == 2
    assert "threshold_baseline" in scores
    backend = OnnxBackend(target)
    (prediction,) = backend.infer([backend.prepare(np.zeros((80, 70), np.float32), "display")])
    probs = prediction.probabilities
    assert probs is not None and probs.shape == (2, 64, 64) and probs.dtype == np.float32
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
