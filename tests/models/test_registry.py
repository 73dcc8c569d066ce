"""The registry finds models by their card's kind and modality; the Segmenter validates the
``model`` parameter against what is installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.errors import InvalidParameterError
from service.models.registry import ModelRegistry, latest_versions
from service.models.segmenter import Segmenter, SegmenterConfig
from tests.conftest import REPO_ROOT

MODELS = latest_versions(REPO_ROOT / "models")


def install(root: Path, name: str, folder: str) -> Path:
    target = root / folder / MODELS[name].name
    shutil.copytree(MODELS[name], target)
    return target


def test_models_are_found_by_their_cards_kind_and_modality(tmp_path):
    install(tmp_path, "cnn-ct", "my-own-folder-name")
    registry = ModelRegistry.load(tmp_path, ["CPUExecutionProvider"], 1, "fp32")
    found = registry.find("cnn", "ct")
    assert found is not None and found.info.name == "cnn-ct"
    assert registry.find("cnn", "cxr") is None and registry.kinds() == ["cnn"]


def test_a_model_marked_unavailable_falls_back_with_its_reason(tmp_path):
    install(tmp_path, "unet-ct", "unet-ct")
    segmenter = Segmenter(SegmenterConfig(tmp_path, providers="cpu"))
    segmenter.registry.mark_unavailable("unet-ct", "out of memory")
    backend, fallback = segmenter.backend_for("unet", "ct")
    assert backend.info.kind == "threshold"
    assert fallback == "model unet-ct is unavailable (out of memory); ran threshold"


def test_a_broken_card_is_still_indexed_so_requests_learn_why(tmp_path):
    directory = install(tmp_path, "unet-ct", "unet-ct")
    card = json.loads((directory / "model.json").read_text())
    del card["postprocess"]["threshold"]
    (directory / "model.json").write_text(json.dumps(card))
    segmenter = Segmenter(SegmenterConfig(tmp_path, providers="cpu"))
    _, fallback = segmenter.backend_for("unet", "ct")
    assert fallback is not None and "postprocess lacks threshold" in fallback


def test_the_model_parameter_must_name_an_installed_kind(tmp_path):
    install(tmp_path, "cnn-cxr", "cnn-cxr")
    segmenter = Segmenter(SegmenterConfig(tmp_path, providers="cpu"))
    assert segmenter.model_kinds() == ["unet", "cnn", "threshold"]
    with pytest.raises(InvalidParameterError, match="choose one of unet, cnn, threshold") as bad:
        segmenter.backend_for("resnet", "cxr")
    assert bad.value.parameter == "model"
    _, fallback = segmenter.backend_for("unet", "cxr")  # the default kind falls back
    assert fallback == "model unet for cxr is not installed; ran threshold"
