"""The browser pages and their endpoints through TestClient: /dashboard, /viewer, static assets,
POST /v1/render and GET /v1/benchmark/history (plus the timing that score_models records)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service import NOT_A_MEDICAL_DEVICE
from service.api.main import create_app
from service.api.settings import REPO_ROOT, Settings
from service.encoders.display import display_frame
from service.imaging import decode
from tests.api.conftest import zip_folder

PAGES = ("/dashboard", "/viewer", "/viewer/volume")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
QU_LAYOUT = "files/covid-qu-ex-layout"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app with the shipped models folder and a results database of its own."""
    settings = Settings(
        models_dir=REPO_ROOT / "models", database_url=f"sqlite:///{tmp_path / 'runs.db'}"
    )
    with TestClient(create_app(settings)) as started:
        yield started


class Tags(HTMLParser):
    """Collects every start tag with its attributes, and the <title> text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def all(self, name):
        return [attrs for tag, attrs in self.tags if tag == name]


def parse(text: str) -> Tags:
    parser = Tags()
    parser.feed(text)
    return parser


def assets(tags: Tags) -> list[str]:
    refs = [a["src"] for a in tags.all("script")] + [a["href"] for a in tags.all("link")]
    return [str(r) for r in refs if r]


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_with_title_disclaimer_and_accessible_controls(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    tags = parse(response.text)
    assert tags.title.startswith("lungseg")
    assert NOT_A_MEDICAL_DEVICE in response.text
    assert "{{" not in response.text
    assert all(img.get("alt") for img in tags.all("img"))
    labelled = {a.get("for") for a in tags.all("label")}
    for control in tags.all("input") + tags.all("select"):
        assert control["id"] in labelled, f"{control['id']} has no <label for>"
    assert tags.all("main") and tags.all("nav")


@pytest.mark.parametrize("path", PAGES)
def test_page_assets_are_served_by_the_app_and_nothing_is_external(client, path):
    page = client.get(path).text
    refs = assets(parse(page))
    assert refs and all(r.startswith("/static/") for r in refs)
    texts = [page]
    for ref in refs:
        response = client.get(ref)
        assert response.status_code == 200, ref
        texts.append(response.text if ref.endswith((".js", ".css")) else "")
    for module in re.findall(r'from "\./([\w.]+)"', "".join(texts)):
        response = client.get(f"/static/pages/{module}")
        assert response.status_code == 200, module
        assert "javascript" in response.headers["content-type"]
        texts.append(response.text)
    for text in texts:
        stripped = text.replace(SVG_NAMESPACE, "")
        assert "http://" not in stripped and "https://" not in stripped


def test_viewer_has_a_real_form(client):
    tags = parse(client.get("/viewer").text)
    assert [a["id"] for a in tags.all("button")] == ["run"]
    names = {a["id"] for a in tags.all("select")}
    assert names == {"modality", "model", "compare"}
    options = [a["value"] for a in tags.all("option")]
    assert {"auto", "cxr", "ct", "unet", "cnn", "threshold"} <= set(options)


def test_render_png_is_the_decoded_image(client, data_dir):
    path = data_dir / QU_LAYOUT / "Val" / "COVID-19" / "images"
    image = sorted(path.glob("*.png"))[0]
    response = client.post("/v1/render", files={"file": (image.name, image.read_bytes())})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    shown = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected).max() <= 1


def test_render_ct_dicom_is_windowed_first_frame(client, data_dir):
    data = (data_dir / "files/dicom/693_J2KR.dcm").read_bytes()
    response = client.post("/v1/render", files={"file": ("ct.dcm", data)})
    assert response.status_code == 200
    shown = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert shown.dtype == np.uint8 and shown.shape == (512, 512)
    np.testing.assert_array_equal(shown, display_frame(decode(data)))
    narrow = client.post(
        "/v1/render",
        params={"window_level": 40, "window_width": 400},
        files={"file": ("ct.dcm", data)},
    )
    assert narrow.status_code == 200 and narrow.content != response.content


@pytest.mark.parametrize(
    ("content", "params", "status"),
    [(b"", {}, 400), (b"not an image", {}, 415), (b"x", {"window_width": 0}, 422)],
)
def test_render_errors_are_problem_json(client, content, params, status):
    response = client.post("/v1/render", params=params, files={"file": ("f.bin", content)})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_history_and_timing_of_a_stored_run(client, data_dir):
    data = zip_folder(data_dir / QU_LAYOUT)
    run = client.post(
        "/v1/benchmark",
        params={"models": ["threshold", "unet"]},
        files={"file": ("qu.zip", data)},
    ).json()
    assert run["status"] == "done"
    entries = run["results"]["entries"]
    for entry in entries:
        timing = entry["timing"]
        assert timing["n_images"] == 12 and timing["ms_per_image"] > 0
        assert timing["total_ms"] == pytest.approx(timing["ms_per_image"] * 12)
    history = client.get("/v1/benchmark/history").json()["runs"]
    assert [h["id"] for h in history] == [run["id"]]
    points = history[0]["entries"]
    assert [p["requested"] for p in points] == ["threshold", "unet"]
    for point, entry in zip(points, entries, strict=True):
        assert point["lung_dice"] == entry["summary"]["all"]["lung"]["dice"]["mean"]
        assert point["ms_per_image"] == entry["timing"]["ms_per_image"]
        assert point["fallback"] == entry["fallback"]
        if entry["fallback"]:
            assert point["label"] == f"unet → {entry['model']['name']} (fallback)"


def test_the_service_never_imports_matplotlib():
    code = (
        "import sys; from service.api.main import create_app; create_app(); "
        "import service.benchmark.table, service.encoders.display; "
        "sys.exit('matplotlib' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
