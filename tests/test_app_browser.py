"""The app in a real browser: Debian's headless Chromium driven by Playwright (no browser download).

Uploads an image, runs every tab, checks the label and the heatmaps appear, and saves a screenshot
of each step to test-artifacts/ (git-ignored) for a human to look at.
"""
from __future__ import annotations

import os
import shutil

import playwright.sync_api as playwright_sync
import pytest
from app_fixtures import ROOT, launch

from space.serving import Served

# gradio 6.31 calls pandas APIs that pandas 3 deprecates, inside its queue: not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),
              pytest.mark.usefixtures("one_torch_thread")]

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000  # each step on a busy 2-core machine


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (.ci/run does it)")
    with playwright_sync.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"app-{name}.png"), full_page=True)


def loaded_images(page, selector: str) -> int:
    """How many <img> under `selector` have finished loading real pixels."""
    loaded = "els => els.filter(e => e.complete && e.naturalWidth > 0).length"
    return page.eval_on_selector_all(f"{selector} img", loaded)


def test_every_tab_in_a_browser(page, served, sample_paths):
    running = launch(served, [(str(p), p.stem) for p in sample_paths])
    try:
        page.goto(running.url)
        header = page.locator("#header")
        header.wait_for()
        assert "not a medical device" in header.inner_text()
        assert "device cpu" in header.inner_text().replace("`", "")
        page.set_input_files("#input-image input[type=file]", str(sample_paths[0]))
        page.wait_for_function("() => document.querySelector('#input-image img') !== null")

        page.get_by_role("button", name="Classify", exact=True).click()
        label = page.locator("#top-classes")
        page.wait_for_function("() => /ring|cross|checker/.test(document.querySelector('#top-classes').innerText)")
        assert any(name in label.inner_text() for name in ("ring", "cross", "checker"))
        shot(page, "1-classify")

        for method, title in (("gradcam", "Grad-CAM"), ("scorecam", "Score-CAM")):
            page.get_by_role("tab", name=title).click()
            page.get_by_role("button", name=f"Run {title}").click()
            page.wait_for_function(f"() => /{title}/.test(document.querySelector('#{method}-summary').innerText)")
            page.wait_for_function(f"() => [...document.querySelectorAll('#{method}-slider img')]"
                                   ".filter(e => e.complete && e.naturalWidth > 0).length >= 2")
            summary = page.locator(f"#{method}-summary").inner_text()
            assert " s" in summary and ("masked pass" in summary if method == "scorecam" else "gradients" in summary)
            shot(page, f"2-{method}")
        # Opacity redraws the overlay from the session's last explanation; the raw heatmap stays.
        srcs = "() => [...document.querySelectorAll('#scorecam-slider img')].map(e => e.src)"
        heat, over = page.evaluate(srcs)
        box = page.locator("#scorecam-opacity input[type=range]").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
        page.wait_for_function(f"() => ({srcs})()[1] !== {over!r}")
        assert page.evaluate(srcs)[0] == heat
        shot(page, "2-scorecam-opacity")

        page.get_by_role("tab", name="Compare").click()
        page.get_by_role("button", name="Compare", exact=True).click()
        page.wait_for_function("() => /Faithfulness/.test(document.querySelector('#compare-table').innerText)")
        for side in ("gradcam", "scorecam"):
            page.wait_for_function(f"() => [...document.querySelectorAll('#compare-{side} img')]"
                                   ".some(e => e.complete && e.naturalWidth > 0)")
        assert "Score-CAM" in page.locator("#compare-table").inner_text()
        shot(page, "3-compare")

        page.get_by_role("tab", name="Examples").click()
        page.locator("#samples button.thumbnail-item").nth(1).click()  # cross_0: not the image uploaded above
        page.wait_for_function("() => document.querySelector('#input-image img')?.src.includes('cross_0')")
        page.get_by_role("tab", name="Classify").click()
        page.get_by_role("button", name="Classify", exact=True).click()  # the sample is now the input
        page.wait_for_function("() => /ring|cross|checker/.test(document.querySelector('#top-classes').innerText)")
        shot(page, "4-examples")
    finally:
        running.demo.close()


def test_banner_when_the_model_cannot_be_loaded(page):
    failed = Served("testorg/missing", "v3", error="testorg/missing: repository not found on the Hub")
    running = launch(failed)
    try:
        page.goto(running.url)
        banner = page.locator("#model-error")
        banner.wait_for()
        assert "could not be loaded" in banner.inner_text() and "repository not found" in banner.inner_text()
        shot(page, "5-model-error")
    finally:
        running.demo.close()
