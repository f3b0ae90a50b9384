"""Debian's headless Chromium driven by Playwright (no browser download), and the walk through every tab
of the app that the browser tests share: upload, Classify, Grad-CAM, Score-CAM (and its opacity slider),
Compare, an Examples click whose sample is classified, a DICOM file through the file box (its PNG preview in
the image box, then classified), and the Study tab on a small DICOM series (the per-study answer and its rule,
the per-slice table and a row's overlay, the gallery, slices.csv downloaded through its link). Screenshots go to
test-artifacts/ (git-ignored).
"""
from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import playwright.sync_api as playwright_sync
import pytest
from app_fixtures import ROOT

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000  # each step on a busy 2-core machine
STUDY_UID, SERIES_UID = "1.2.826.0.1.3680043.8.498.71", "1.2.826.0.1.3680043.8.498.72"  # never shown by the app
DICOM_SIZE = (48, 40)  # width, height of each slice of `dicom_series`


@pytest.fixture(scope="session")
def dicom_series(tmp_path_factory) -> list[Path]:
    """A DICOM series of three 48 x 40 slices of 12-bit values with their own window, InstanceNumber 1 to 3, named
    as scanners' exports often are: IM0001, IM0002, IM0003, no extension (the browser's image box refuses them)."""
    from test_dicom import dataset, write

    out = tmp_path_factory.mktemp("dicom-series")
    width, height = DICOM_SIZE
    ramp = np.add.outer(np.arange(height), np.arange(width)) * 30  # 0..2610
    files = []
    for n in (1, 2, 3):
        pixels = (ramp + np.random.default_rng(n).integers(0, 1000, ramp.shape)).astype(np.uint16)  # < 4096
        ds = dataset(pixels, StudyInstanceUID=STUDY_UID, SeriesInstanceUID=SERIES_UID, InstanceNumber=n,
                     PatientID="PAT-0042", WindowCenter=1500, WindowWidth=2000)
        files.append(write(out / f"IM{n:04d}", ds))
    return files


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


def use_every_tab(page, url: str, image: Path, example: tuple[int, str], labels: list[str], prefix: str,
                  series: list[Path]) -> None:
    """Drive every tab of the app at `url` as a person would; `example`: (position, file stem) of a sample to click;
    `series`: a DICOM series (`dicom_series`), whose first slice goes through the file box and all of it to Study."""
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

    # A DICOM through the file box: its windowed slice, a PNG at the DICOM's size, becomes the image every tab reads.
    dicom = series[0]
    page.set_input_files("#input-file input[type=file]", str(dicom))
    width, height = DICOM_SIZE
    page.wait_for_function(f"() => [...document.querySelectorAll('#input-image img')].some(e => "
                           f"e.src.endsWith('/{dicom.name}.png') && e.complete && e.naturalWidth === {width} && "
                           f"e.naturalHeight === {height})")
    assert any(name in classified(page, labels, f"{dicom.name}.png") for name in labels)
    shot(page, f"{prefix}6-dicom-classified")

    use_study_tab(page, series, labels)
    shot(page, f"{prefix}7-study")


def use_study_tab(page, series: list[Path], labels: list[str]) -> None:
    """The Study tab on a DICOM series uploaded out of order: one study named by its hashed series, its answer and
    rule, a table row per slice in InstanceNumber order, the gallery, a row's overlay, slices.csv downloaded."""
    page.get_by_role("tab", name="Study").click()
    page.set_input_files("#study-files input[type=file]", [str(p) for p in reversed(series)])
    page.wait_for_function(f"() => document.querySelectorAll('#study-files tr.file').length === {len(series)}")
    page.get_by_role("button", name="Answer the study").click()
    page.wait_for_function("() => /Rule: mean probability/.test(document.querySelector('#study-answers').innerText)")
    answers = page.locator("#study-answers").inner_text()
    study = re.search(rf"^(series [0-9a-f]{{12}}) \(dicom, {len(series)} slices\): ({'|'.join(labels)}), "
                      r"mean probability [01]\.[0-9]{3}$", answers, re.MULTILINE)
    assert study, answers
    assert STUDY_UID not in page.content() and SERIES_UID not in page.content() and "PAT-0042" not in page.content()
    names = [p.name for p in series]
    page.wait_for_function(f"() => [...document.querySelectorAll('#study-gallery img')]"
                           f".filter(e => e.complete && e.naturalWidth > 0).length === {len(series)}")
    # The table: a row per slice, by InstanceNumber (not upload order); selecting another row shows its overlay.
    rows = (f"() => [...document.querySelectorAll('#study-table [role=row]')].map(r => [...r.querySelectorAll("
            f"'[role=gridcell]')].map(c => c.innerText.trim())).filter(cells => cells[0] === {study.group(1)!r})")
    page.wait_for_function(f"() => ({rows})().length === {len(series)}")  # the table draws its rows after the answer
    assert [cells[2] for cells in page.evaluate(rows)] == names, page.evaluate(rows)
    shown = "() => document.querySelector('#study-overlay img')?.src ?? ''"
    page.wait_for_function(f"() => /slice-[0-9]+[.]png$/.test(({shown})())")
    other = 2 if page.evaluate(shown).endswith("/slice-1.png") else 1
    cell = re.compile(rf"^\s*{names[other - 1]}\s*$")
    page.locator("#study-table [role=gridcell]").filter(has_text=cell).first.click()
    page.wait_for_function(f"() => ({shown})().endsWith('/slice-{other}.png')")
    # The downloads: slices.csv through its link, a row per slice with the table's answers.
    links = page.locator("#study-downloads a[download]")
    assert [links.nth(i).get_attribute("download") for i in range(links.count())] == [
        "slices.csv", "studies.csv", "overlays.zip"]
    got = page.request.get(page.locator("#study-downloads a[download='slices.csv']").get_attribute("href"))
    assert got.ok
    table = list(csv.DictReader(io.StringIO(got.text())))
    assert [(r["study"], r["slice"]) for r in table] == [(study.group(1), name) for name in names]
    assert all(r["label"] in labels for r in table)
