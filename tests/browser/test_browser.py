"""The pages in real headless Chromium against the real service (``python -m service.api``).

A small benchmark is run through the API so that the dashboard has stored results; the viewer
gets real images (PNG and DICOM) and must show the same infection percentage as the API returns
for the same file and parameters. Screenshots go to ``$LUNGSEG_SCREENSHOTS`` (or a tmp folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import zip_folder

pytestmark = pytest.mark.browser
QU_LAYOUT = "files/covid-qu-ex-layout"
VIEWPORT = {"width": 1200, "height": 900}


@pytest.fixture(scope="module")
def benchmark_run(service_url: str, data_dir: Path) -> dict[str, Any]:
    """One finished benchmark of unet and threshold on the 12-image COVID-QU-Ex fixture."""
    response = httpx.post(
        f"{service_url}/v1/benchmark",
        params={"models": ["unet", "threshold"]},
        files={"file": ("covid-qu-ex.zip", zip_folder(data_dir / QU_LAYOUT))},
        timeout=300,
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def page(browser: Any, service_url: str) -> Any:
    """A fresh page that fails the test on any script error or request leaving the service."""
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def check_request(request: Any) -> None:
        if not request.url.startswith((service_url, "data:", "blob:")):
            problems.append(f"external request: {request.url}")

    opened.on("request", check_request)
    yield opened
    context.close()
    assert not problems, problems


def api_segment(service_url: str, path: Path, **params: str) -> dict[str, Any]:
    with path.open("rb") as handle:
        response = httpx.post(
            f"{service_url}/v1/segment",
            params=params,
            files={"file": (path.name, handle)},
            timeout=120,
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_dashboard_shows_the_stored_run(page, service_url, benchmark_run, screenshots):
    page.goto(f"{service_url}/dashboard")
    page.wait_for_selector(f"body[data-loaded='{benchmark_run['id']}']", timeout=30_000)
    assert "not a medical device" in page.inner_text("#disclaimer")
    entries = benchmark_run["results"]["entries"]
    rows = page.locator("#seed tbody tr")
    assert rows.count() == len(entries)
    for i, entry in enumerate(entries):
        cells = rows.nth(i).locator("td")
        lung_dice = entry["summary"]["all"]["lung"]["dice"]["mean"]
        assert cells.nth(4).inner_text() == f"{lung_dice:.3f}"
        assert cells.nth(10).inner_text() == f"{entry['timing']['ms_per_image']:.1f}"
        if entry["fallback"]:
            notice = f"{entry['model']['kind']} ran instead of {entry['requested']}"
            assert notice in page.inner_text("#fallbacks")
    charts = page.locator("figure.chart svg[role='img']")
    assert charts.count() == 4
    assert all(charts.nth(i).get_attribute("aria-label") for i in range(charts.count()))
    assert page.locator("#history tbody tr").count() >= 1
    page.screenshot(path=str(screenshots / "dashboard.jpg"), full_page=True, quality=70)


def check_viewer(page, service_url, image: Path, models: list[str], modality: str = "auto"):
    page.goto(f"{service_url}/viewer")
    assert "not a medical device" in page.inner_text("#disclaimer")
    page.set_input_files("#file", str(image))
    page.select_option("#modality", modality)
    page.select_option("#model", models[0])
    page.select_option("#compare", models[1] if len(models) > 1 else "")
    page.focus("#compare")
    page.keyboard.press("Tab")  # the opacity slider, then the Segment button, by keyboard
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "run"
    page.keyboard.press("Enter")
    page.wait_for_selector("body[data-state='done'], body[data-state='error']", timeout=120_000)
    assert page.get_attribute("body", "data-state") == "done", page.inner_text("#status")
    for model in models:
        figure = page.locator(f"figure.result[data-model='{model}']")
        api = api_segment(service_url, image, modality=modality, model=model, format="png")
        verdict = figure.locator(".verdict")
        assert "not a medical device" in verdict.inner_text()
        if not api["lung_found"]:
            assert verdict.get_attribute("data-verdict") == "no-lung"
            assert "No lung found" in verdict.inner_text()
        elif not api["infection_detected"]:
            assert verdict.get_attribute("data-verdict") == "no-infection"
            assert "not detected" in verdict.inner_text()
        else:
            percent = figure.locator(".percent")
            assert float(percent.get_attribute("data-value")) == api["infection_percent"]
            assert percent.inner_text() == f"{api['infection_percent']:.2f} %"
            assert f"{api['infection_score']:.2f}" in verdict.inner_text()
        img = figure.locator("img")
        assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [
            api["width"],
            api["height"],
        ]
        assert api["model"]["name"] in img.get_attribute("alt")
        if api["fallback"]:
            assert api["fallback"] in figure.inner_text()
        assert api["model"]["name"] in figure.inner_text()


def test_viewer_overlays_two_models_on_a_covid_radiograph(page, service_url, data_dir, screenshots):
    image = data_dir / "cxr-covid19-gb" / "images" / "1312A392-67A3-4EBF-9319-810CF6DA5EF6.png"
    if not image.is_file():
        image = sorted((data_dir / QU_LAYOUT / "Val" / "COVID-19" / "images").glob("*.png"))[0]
    check_viewer(page, service_url, image, ["unet", "threshold"])
    page.screenshot(path=str(screenshots / "viewer-cxr.jpg"), full_page=True, quality=70)


def test_viewer_says_no_lung_on_a_brain_ct(page, service_url, data_dir, screenshots):
    check_viewer(page, service_url, data_dir / "files" / "dicom" / "eCT_Supplemental.dcm", ["unet"])
    figure = page.locator("figure.result[data-model='unet']")
    assert "No lung found" in figure.inner_text()
    assert "0.00 %" not in figure.inner_text()


def test_viewer_shows_a_dicom_radiograph(page, service_url, data_dir, screenshots):
    check_viewer(page, service_url, data_dir / "files" / "dicom" / "RG1_UNCR.dcm", ["threshold"])
    page.screenshot(path=str(screenshots / "viewer-dicom.jpg"), full_page=True, quality=70)
