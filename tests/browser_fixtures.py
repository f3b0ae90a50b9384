"""Debian's headless Chromium driven by Playwright (no browser download), and the walk through every tab
of the app that the browser tests share: upload, Classify, Grad-CAM, Score-CAM (and its opacity slider),
Compare, then an Examples click whose sample is classified. Screenshots go to test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import playwright.sync_api as playwright_sync
import pytest
from app_fixtures import ROOT

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
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def classified(page, labels: list[str], sent: str = "") -> str:
    """Click Classify on the Classify tab (the request must carry `sent`, e.g. a sample's name); the top-classes
    text once the answer shows, its progress timer gone."""
    page.get_by_role("tab", name="Classify").click()
    with page.expect_request(lambda r: r.method == "POST" and "/queue/join" in r.url) as join:
        page.get_by_role("button", name="Classify", exact=True).click()
    assert sent in (join.value.post_data or "")
    pattern = "|".join(labels)
    page.wait_for_function(f"() => {{ const t = document.querySelector('#top-classes').innerText; "
                           f"return /{pattern}/.test(t) && !/[0-9][.][0-9]+s|processing|queue/i.test(t); }}")
    return page.locator("#top-classes").inner_text()


def use_every_tab(page, url: str, image: Path, example: tuple[int, str], labels: list[str], prefix: str) -> None:
    """Drive every tab of the app at `url` as a person would; `example`: (position, file stem) of a sample to click."""
    page.goto(url)
    header = page.locator("#header")
    header.wait_for()
    assert "not a medical device" in header.inner_text()
    page.set_input_files("#input-image input[type=file]", str(image))
    page.wait_for_function("() => document.querySelector('#input-image img') !== null")
    assert any(name in classified(page, labels) for name in labels)
    shot(page, f"{prefix}1-classify")

    for method, title in (("gradcam", "Grad-CAM"), ("scorecam", "Score-CAM")):
        page.get_by_role("tab", name=title).click()
        page.get_by_role("button", name=f"Run {title}").click()
        page.wait_for_function(f"() => /{title}/.test(document.querySelector('#{method}-summary').innerText)")
        page.wait_for_function(f"() => [...document.querySelectorAll('#{method}-slider img')]"
                               ".filter(e => e.complete && e.naturalWidth > 0).length >= 2")
        # The faithfulness figures follow the map in a second step: curves drawn, summary updated.
        page.wait_for_function(f"() => /deletion/.test(document.querySelector('#{method}-summary').innerText)")
        page.wait_for_function(f"() => [...document.querySelectorAll('#{method}-curves img')]"
                               ".some(e => e.complete && e.naturalWidth > 0)")
        summary = page.locator(f"#{method}-summary").inner_text()
        assert " s" in summary and ("masked pass" in summary if method == "scorecam" else "gradients" in summary)
        assert "beats the baselines" in summary
        shot(page, f"{prefix}2-{method}")
    # Opacity redraws the overlay from the session's last explanation; the raw heatmap stays.
    srcs = "() => [...document.querySelectorAll('#scorecam-slider img')].map(e => e.src)"
    heat, over = page.evaluate(srcs)
    box = page.locator("#scorecam-opacity input[type=range]").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    page.wait_for_function(f"() => ({srcs})()[1] !== {over!r}")
    assert page.evaluate(srcs)[0] == heat
    shot(page, f"{prefix}2-scorecam-opacity")

    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_function("() => /Deletion/.test(document.querySelector('#compare-table').innerText)")
    for side in ("gradcam", "scorecam", "gradcam-curves", "scorecam-curves"):
        page.wait_for_function(f"() => [...document.querySelectorAll('#compare-{side} img')]"
                               ".some(e => e.complete && e.naturalWidth > 0)")
    assert "Score-CAM" in page.locator("#compare-table").inner_text()
    shot(page, f"{prefix}3-compare")

    page.get_by_role("tab", name="Examples").click()
    page.locator("#samples button.thumbnail-item").nth(example[0]).click()
    page.wait_for_function(f"() => document.querySelector('#input-image img')?.src.includes({example[1]!r})")
    page.wait_for_function("() => [...document.querySelectorAll('#input-image img')]"
                           ".some(e => e.complete && e.naturalWidth > 0)")  # the sample's pixels were served
    shot(page, f"{prefix}4-examples")
    assert any(name in classified(page, labels, example[1]) for name in labels)  # the sample is now the input
    shot(page, f"{prefix}5-example-classified")
