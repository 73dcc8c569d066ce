"""The benchmark CLI: its JSON agrees with ``evaluate`` + ``summarise`` called directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.benchmark.cli import json_safe, main
from service.benchmark.evaluate import evaluate, summarise
from service.datasets import read_set
from service.models.threshold import ThresholdBackend

QU_LAYOUT = Path("files") / "covid-qu-ex-layout"


def roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(json_safe(value)))


@pytest.fixture(scope="module")
def qu_layout(data_dir: Path) -> Path:
    return data_dir / QU_LAYOUT


def test_json_matches_direct_evaluation(
    qu_layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "bench.json"
    assert main(["--set", str(qu_layout), "--model", "threshold", "--json", str(out)]) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))

    assert payload["model"] == "threshold"
    (result,) = payload["results"]
    assert result["set"] == "covid-qu-ex-layout"
    assert result["layout"] == "covid-qu-ex"
    assert result["modality"] == "cxr"
    assert result["model"] == {
        "name": "threshold-cxr",
        "version": "1.0.0",
        "kind": "threshold",
        "modality": "cxr",
        "provider": "numpy",
    }
    assert result["n_images"] == 12
    assert len(result["rows"]) == 12
    assert set(result["summary"]) == {"all", "covid", "non_covid"}
    assert result["summary"]["covid"]["n_images"] == 4
    assert result["summary"]["non_covid"]["n_images"] == 8
    assert result["summary"]["all"]["infection_false_positive_rate"]["n"] == 8

    rows = evaluate(ThresholdBackend("cxr"), read_set(qu_layout).samples)
    assert result["summary"] == roundtrip(summarise(rows).to_dict())
    assert result["rows"] == roundtrip([r.to_dict() for r in rows])

    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["set", "model", "group", "n"]
    assert "covid-qu-ex-layout" in table
    assert f"{result['summary']['all']['lung']['dice']['mean']:.3f}" in table


def test_filters_split_modality_limit(qu_layout: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--set", str(qu_layout), "--split", "Val", "--limit", "3", "--json", str(out)]
    assert main(args) == 0
    (result,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert result["n_images"] == 3
    assert result["split"] == "Val"

    assert main([*args, "--no-rows"]) == 0
    (summary_only,) = json.loads(out.read_text(encoding="utf-8"))["results"]
    assert summary_only["rows"] is None
    assert summary_only["summary"] == result["summary"]

    assert main(["--set", str(qu_layout), "--split", "Train", "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["results"] == []

    assert main(["--set", str(qu_layout), "--modality", "ct", "--json", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["results"] == []


def test_missing_set_is_an_error(tmp_path: Path) -> None:
    assert main(["--set", str(tmp_path / "nowhere")]) == 1


def test_json_safe() -> None:
    assert json_safe({"a": [float("nan"), 1.5, (float("inf"), 2)], "b": None}) == {
        "a": [None, 1.5, [None, 2]],
        "b": None,
    }
