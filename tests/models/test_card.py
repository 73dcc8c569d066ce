"""Model cards are parsed strictly against their schema version."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from service.errors import ModelLoadError
from service.models.card import ModelCard, read_card
from service.models.registry import latest_versions
from tests.conftest import REPO_ROOT


@pytest.fixture
def card() -> dict[str, Any]:
    directory = latest_versions(REPO_ROOT / "models")["unet-ct"]
    return json.loads((directory / "model.json").read_text(encoding="utf-8"))


def v2(card: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(card)
    out["schema_version"] = 2
    out["score_output"] = {"name": "infection_score", "shape": ["batch", 1]}
    out["decision"] = {
        "threshold": 0.4,
        "min_lung_fraction": 0.002,
        "min_lung_confidence": 0.85,
        "min_lung_inside_body": 0.5,
        "min_lung_area_mm2": 500.0,
        "chosen_on": "held-back training images",
    }
    return out


def test_every_shipped_card_parses_and_round_trips():
    for directory in latest_versions(REPO_ROOT / "models").values():
        card = read_card(directory)
        assert ModelCard.from_dict(card.to_dict()) == card


@pytest.mark.parametrize("key", ["mean", "ct_window", "size"])
def test_a_missing_preprocess_key_is_an_error_naming_it(card, key):
    del card["preprocess"][key]
    with pytest.raises(ModelLoadError, match=f"preprocess lacks {key}"):
        ModelCard.from_dict(card)


def test_a_missing_top_level_key_is_an_error_naming_it(card):
    del card["labels"]
    with pytest.raises(ModelLoadError, match="lacks labels"):
        ModelCard.from_dict(card)


@pytest.mark.parametrize("version", [None, 0, 3, "1"])
def test_an_unknown_schema_version_is_refused(card, version):
    card["schema_version"] = version
    with pytest.raises(ModelLoadError, match="schema_version"):
        ModelCard.from_dict(card)


def test_schema_2_carries_the_decision_head_and_its_operating_point(card):
    parsed = ModelCard.from_dict(v2(card))
    assert parsed.schema_version == 2
    assert parsed.score_output is not None and parsed.score_output.name == "infection_score"
    assert parsed.decision is not None and parsed.decision.threshold == 0.4
    assert parsed.decision.notes == {"chosen_on": "held-back training images"}
    assert ModelCard.from_dict(parsed.to_dict()) == parsed
    missing = v2(card)
    del missing["decision"]
    with pytest.raises(ModelLoadError, match="lacks decision"):
        ModelCard.from_dict(missing)
    no_lung_rule = v2(card)
    del no_lung_rule["decision"]["min_lung_confidence"]
    with pytest.raises(ModelLoadError, match="decision lacks min_lung_confidence"):
        ModelCard.from_dict(no_lung_rule)
    out_of_range = v2(card)
    out_of_range["decision"]["threshold"] = 1.5
    with pytest.raises(ModelLoadError, match="not in"):
        ModelCard.from_dict(out_of_range)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("kind", "threshold", "not a model kind"),
        ("kind", "Bad Kind", "not a model kind"),
        ("modality", "mr", "modality"),
        ("labels", ["lung"], "labels"),
        ("input", "image", "input must be an object"),
    ],
)
def test_invalid_values_are_refused(card, key, value, fragment):
    card[key] = value
    with pytest.raises(ModelLoadError, match=fragment):
        ModelCard.from_dict(card)
