"""The app in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Uploads an image, runs every tab, checks the label and the heatmaps appear, opens a DICOM through the file box
and answers a DICOM series on the Study tab, and saves a screenshot of each step to test-artifacts/ (git-ignored)
for a human to look at. tests/test_space_deployed.py
runs the same walk against the app as a Space runs it.
"""
from __future__ import annotations

import pytest
from app_fixtures import LABELS, examples_of, launch
from browser_fixtures import browser, dicom_series, page, shot, use_every_tab  # noqa: F401 - fixtures used by name

from space.serving import Served

# gradio 6.31 calls pandas APIs that pandas 3 deprecates, inside its queue: not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
              pytest.mark.usefixtures("one_torch_thread")]


def test_every_tab_in_a_browser(page, served, sample_paths, boxed_example, dicom_series):  # noqa: F811 - fixtures
    running = launch(served, examples_of([*sample_paths, boxed_example[0]]))
    try:
        use_every_tab(page, running.url, sample_paths[0], (1, sample_paths[1].stem), LABELS, "app-", dicom_series)
        assert "device cpu" in page.locator("#header").inner_text().replace("`", "")
        # The sample published with its box file: clicked, then explained, it gets the box and the pointing game.
        page.get_by_role("tab", name="Examples").click()
        page.locator("#samples button.thumbnail-item").nth(len(sample_paths)).click()
        page.wait_for_function(f"() => document.querySelector('#input-image img')?.src.includes("
                               f"{boxed_example[0].stem!r})")
        page.get_by_role("tab", name="Grad-CAM").click()
        page.get_by_role("button", name="Run Grad-CAM").click()
        page.wait_for_function("() => /pointing game: (hit|miss), energy in box: [0-9.]+ \\([0-9.]+x its area "
                               "share\\)/.test(document.querySelector('#gradcam-summary').innerText)")
        shot(page, "app-8-example-with-box")
    finally:
        running.demo.close()


def test_banner_when_the_model_cannot_be_loaded(page):  # noqa: F811 - pytest fixtures
    failed = Served("testorg/missing", "v3", error="testorg/missing: repository not found on the Hub")
    running = launch(failed)
    try:
        page.goto(running.url)
        banner = page.locator("#model-error")
        banner.wait_for()
        assert "could not be loaded" in banner.inner_text() and "repository not found" in banner.inner_text()
        shot(page, "app-9-model-error")
    finally:
        running.demo.close()
