"""``python -m report`` on a tiny run: files produced, PNGs valid, the HTML references
them; the numbers come from the run as stored (``service.benchmark.table``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from report.cli import main
from service import NOT_A_MEDICAL_DEVICE
from service.benchmark.jobs import score_models
from service.benchmark.store import RunStore
from service.benchmark.table import dice_values, entry_label, history, seed_rows
from service.datasets import LabelledSet, read_set
from service.models.segmenter import Segmenter, SegmenterConfig

QU_LAYOUT = "files/covid-qu-ex-layout"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_set(data_dir: Path) -> tuple[Path, LabelledSet]:
    root = data_dir / QU_LAYOUT
    return root, read_set(root)


@pytest.fixture(scope="module")
def results(tiny_set) -> dict:
    """A real run of the threshold segmenter (and unet, which falls back without models)."""
    return score_models(
        Segmenter(SegmenterConfig(None)), tiny_set[1], ["threshold", "unet"]
    ).to_dict()


def test_score_models_measures_time_per_image(results):
    for entry in results["entries"]:
        timing = entry["timing"]
        assert timing["n_images"] == len(entry["rows"]) == 12
        assert 0 < timing["ms_per_image"] < 60_000
        assert timing["total_ms"] == pytest.approx(timing["ms_per_image"] * 12)


def test_tables_read_the_stored_summary(results):
    rows = seed_rows(results)
    assert [r["requested"] for r in rows] == ["threshold", "unet"]
    for row, entry in zip(rows, results["entries"], strict=True):
        summary = entry["summary"]["all"]
        assert row["lung_dice"] == summary["lung"]["dice"]["mean"]
        assert row["infection_accuracy"] == summary["infection"]["accuracy"]["mean"]
        assert row["lung_loss"] == summary["lung"]["loss"]["mean"]
        assert row["ms_per_image"] == entry["timing"]["ms_per_image"]
    assert entry_label(results["entries"][1]) == "unet → threshold-cxr (fallback)"
    lung = dice_values(results, "lung")[0]
    assert len(lung["covid"]) == 4 and len(lung["non_covid"]) == 8
    infection = dice_values(results, "infection")[0]
    assert len(infection["covid"]) == 4 and infection["non_covid"] == []


def test_history_is_oldest_first_without_rows(results):
    runs = [
        {"id": i, "created": c, "set_name": "s", "status": "done", "n_images": 12}
        for i, c in (("b", "2025-01-02T00:00:00"), ("a", "2025-01-01T00:00:00"))
    ]
    points = history([{**r, "results": results} for r in runs])
    assert [p["id"] for p in points] == ["a", "b"]
    assert "rows" not in points[0]["entries"][0]


def check_report(out: Path) -> str:
    html = (out / "index.html").read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', html)
    assert len(sources) == html.count("<img ")
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert sorted(src for src, _ in sources) == pngs
    for src, _alt in sources:
        data = (out / src).read_bytes()
        assert data.startswith(PNG_MAGIC)
        image = cv2.imread(str(out / src))
        assert image is not None and min(image.shape[:2]) > 100
    assert "http://" not in html and "https://" not in html
    assert NOT_A_MEDICAL_DEVICE in html and "<title>lungseg benchmark report" in html
    return html


def test_report_from_a_run_json_file(tmp_path, tiny_set, results):
    root, _ = tiny_set
    run_file = tmp_path / "run.json"
    record = {"id": "r1", "status": "done", "set_name": "qu", "n_images": 12, "results": results}
    run_file.write_text(json.dumps(record), encoding="utf-8")
    out = tmp_path / "report"
    code = main(
        [
            "--run",
            str(run_file),
            "--set",
            str(root),
            "--out",
            str(out),
            "--models",
            str(tmp_path / "no-models"),
        ]
    )
    assert code == 0
    html = check_report(out)
    for name in ("metrics.png", "dice.png", "latency.png"):
        assert f'src="{name}"' in html
    gallery = sorted((out / "gallery").glob("*.png"))
    assert [p.name.split("-", 2)[2] for p in gallery] == ["covid.png"] * 3 + ["non-covid.png"] * 3
    assert "threshold ran instead of unet" in html
    assert f"{results['entries'][0]['summary']['all']['lung']['dice']['mean']:.3f}" in html
    assert "history.png" not in html


def test_report_of_the_latest_run_in_a_database_has_history(tmp_path, tiny_set, results):
    root, labelled = tiny_set
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    store = RunStore(url)
    for run_id in ("first", "second"):
        store.create(run_id, labelled.name, ["threshold", "unet"], 12)
        store.set_status(run_id, "done", results=results)
    store.engine.dispose()
    out = tmp_path / "report"
    code = main(
        [
            "--run",
            "latest",
            "--database-url",
            url,
            "--set",
            str(root),
            "--out",
            str(out),
            "--per-class",
            "1",
        ]
    )
    assert code == 0
    html = check_report(out)
    assert 'src="history.png"' in html and "second" in html
    assert len(list((out / "gallery").glob("*.png"))) == 2


def test_report_refuses_an_unknown_run_an_empty_run_or_the_wrong_set(
    tmp_path, tiny_set, data_dir, results
):
    root, _ = tiny_set
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    out = tmp_path / "out"
    assert main(["--run", "nope", "--database-url", url, "--set", str(root), "--out", str(out)])
    empty, full = tmp_path / "empty.json", tmp_path / "full.json"
    empty.write_text(json.dumps({"set": "x", "entries": []}), encoding="utf-8")
    full.write_text(json.dumps(results), encoding="utf-8")
    assert main(["--run", str(empty), "--set", str(root), "--out", str(out)]) == 1
    other = data_dir / "cxr-shenzhen"
    assert main(["--run", str(full), "--set", str(other), "--out", str(out)]) == 1
    assert not (out / "index.html").exists()
