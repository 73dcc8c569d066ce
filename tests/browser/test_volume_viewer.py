"""The volume viewer in real headless Chromium against the real service: a zip of the real
64-slice chest series uploaded, the progress bar while the job runs, then the slices scrolled
by the wheel, the keys and the slider with the overlays, the window presets, the orientation
letters, and the volumes and percentages per lung (each with the research-use sentence) equal to
the API's. A screenshot goes to ``$LUNGSEG_SCREENSHOTS/viewer-volume.jpg``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.api.volume_helpers import chest_paths, zipped

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1280, "height": 1000}


@pytest.fixture
def page(browser: Any, service_url: str) -> Any:
    """A fresh page that fails the test on any script error or request leaving the service."""
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on(
        "request",
        lambda r: (
            None
            if r.url.startswith((service_url, "data:", "blob:"))
            else problems.append(f"external request: {r.url}")
        ),
    )
    yield opened
    context.close()
    assert not problems, problems


def _pixels(page: Any) -> np.ndarray:
    data = page.evaluate(
        "() => { const c = document.getElementById('canvas');"
        " return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"
    )
    return np.array(data, np.uint8)


def test_a_zipped_series_scrolls_with_its_overlays(
    page: Any, service_url: str, data_dir: Path, tmp_path: Path, screenshots: Path
) -> None:
    archive = tmp_path / "chest-series.zip"
    archive.write_bytes(zipped({p.name: p.read_bytes() for p in chest_paths(data_dir)}))
    page.goto(f"{service_url}/viewer/volume")
    assert "not a medical device" in page.inner_text("#disclaimer")
    page.set_input_files("#files", str(archive))
    page.select_option("#model", "unet")
    page.click("#run")
    page.wait_for_selector("#progress-box:not([hidden])", timeout=60_000)
    page.wait_for_selector("body[data-state='done'], body[data-state='error']", timeout=300_000)
    assert page.get_attribute("body", "data-state") == "done", page.inner_text("#status")

    jobs = httpx.get(f"{service_url}/v1/volumes", timeout=30).json()["jobs"]
    result = httpx.get(f"{service_url}/v1/volumes/{jobs[0]['id']}", timeout=30).json()["result"]
    assert page.get_attribute("#frame", "data-slice") == "32"  # the middle slice first
    letters = page.locator(".orient")
    assert [letters.nth(i).inner_text() for i in range(4)] == ["A", "P", "R", "L"]
    box = {k: page.locator(f".orient.{k}").bounding_box() for k in ("left", "right", "top")}
    assert box["left"]["x"] < box["top"]["x"] < box["right"]["x"]  # R on the image's left

    rows = page.locator("#lung-table tbody tr")
    expected = [result, result["lungs"]["left"], result["lungs"]["right"]]
    for i, lung in enumerate(expected):
        percent = rows.nth(i).locator(".percent")
        value = lung["infection_percent"]
        assert float(percent.get_attribute("data-value")) == value
        assert percent.inner_text() == f"{value:.2f} %"
        assert "research use only" in rows.nth(i).locator(".research").inner_text()
    left_ml = result["lungs"]["left"]["volume_ml"]
    assert f"{left_ml:.1f} mL" in rows.nth(1).inner_text()

    before = _pixels(page)
    page.hover("#frame")
    page.mouse.wheel(0, 120)
    page.wait_for_selector("#frame[data-slice='33']")
    page.focus("#frame")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    page.wait_for_selector("#frame[data-slice='30']")
    page.keyboard.press("PageUp")
    page.wait_for_selector("#frame[data-slice='40']")
    page.fill("#slice", "20")
    page.dispatch_event("#slice", "input")
    page.wait_for_selector("#frame[data-slice='20']")
    assert "Slice 21 of 64" in page.inner_text("#slice-info")
    assert not np.array_equal(before, _pixels(page))
    lung_window = _pixels(page)
    page.select_option("#window", "mediastinum")
    page.wait_for_timeout(800)
    assert not np.array_equal(lung_window, _pixels(page))
    page.select_option("#window", "lung")
    shown = max(result["slices"], key=lambda s: s["infection_area_px"])["index"]
    page.fill("#slice", str(shown))  # the most infection: the left upper lobe mass
    page.dispatch_event("#slice", "input")
    page.wait_for_selector(f"#frame[data-slice='{shown}']")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshots / "viewer-volume.jpg"), full_page=True, quality=75)
