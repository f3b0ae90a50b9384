"""Studies (hub.study, `python -m hub explain --by-study`, the app's Study tab): grouping, the rule, the CSVs,
and every bad input refused with one line before any model work.

Images and DICOM files are made here, tiny (32 px); the model is the app tests' untrained 64 px ResNet50.
"""
from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid
from test_dicom import dataset, write

from hub.__main__ import main
from hub.errors import StudyError
from hub.images import load_image
from hub.study import (
    RULE,
    SLICES_CSV,
    STUDIES_CSV,
    Limits,
    explain_studies,
    read_studies,
    slice_columns,
    study_columns,
)
from space.study import TABLE_COLUMNS, StudyEndpoint

STUDY_UID, SERIES_UID = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def png(path: Path, size: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def dcm(path: Path, instance: int, series: str = SERIES_UID, size: int = 32, frames: int = 1) -> Path:
    """A greyscale DICOM slice of a series, with its InstanceNumber (a multi-frame file when frames > 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(instance)
    shape = (frames, size, size) if frames > 1 else (size, size)
    ds = dataset(rng.integers(0, 4000, shape, dtype=np.uint16), StudyInstanceUID=STUDY_UID,
                 SeriesInstanceUID=series, InstanceNumber=instance, PatientID="PAT-123")
    return write(path, ds)


def report(path: Path) -> Path:
    """A DICOM structured report: a .dcm without pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = BasicTextSRStorage, generate_uid()
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "SR", STUDY_UID, SERIES_UID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def clf(served):
    return served.classifier


@pytest.fixture()
def study_dir(tmp_path) -> Path:
    """Two image folders (3 and 2 slices), a DICOM series of 3 (written out of order) and a note."""
    root = tmp_path / "scans"
    for i in range(3):
        png(root / "patientA" / f"slice{i}.png", seed=i)
    for i in range(2):
        png(root / "patientB" / f"s{i}.png", size=40, seed=10 + i)
    for n, name in ((3, "b.dcm"), (1, "c.dcm"), (2, "a.dcm")):
        dcm(root / "ct" / name, n)
    (root / "ct" / "notes.txt").write_text("not an image")
    return root


def test_grouping_by_folder_and_hashed_series(study_dir, tmp_path):
    request = read_studies([study_dir], tmp_path / "work")
    names = [s.name for s in request.studies]
    series = next(s for s in request.studies if s.kind == "dicom")
    assert names == ["scans/patientA", "scans/patientB", series.name]
    assert series.name.startswith("series ") and len(series.name) == len("series ") + 12
    assert STUDY_UID not in series.name and SERIES_UID not in series.name
    assert [s.name for s in series.slices] == ["scans/ct/c.dcm", "scans/ct/a.dcm", "scans/ct/b.dcm"]  # InstanceNumber
    assert [s.size for s in request.studies] == [(32, 32), (40, 40), (32, 32)]
    assert request.skipped == ("scans/ct/notes.txt",)


def test_a_multi_frame_file_is_one_slice_a_frame_and_a_zip_is_a_folder(tmp_path):
    dcm(tmp_path / "cine" / "cine.dcm", 1, frames=3)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(2):
            zf.write(png(tmp_path / "src" / f"x{i}.png", seed=i), f"day1/x{i}.png")
    request = read_studies([tmp_path / "cine" / "cine.dcm", archive], tmp_path / "work")
    cine, day1 = (next(s for s in request.studies if s.kind == k) for k in ("dicom", "image"))
    assert [s.label for s in cine.slices] == [f"{tmp_path}/cine/cine.dcm [frame {i}]" for i in (1, 2, 3)]
    assert day1.name == "study/day1" and [s.name for s in day1.slices] == ["study/day1/x0.png", "study/day1/x1.png"]


def test_each_slice_and_the_rule_of_each_study(study_dir, clf, tmp_path, one_torch_thread):
    request = read_studies([study_dir], tmp_path / "work")
    out = tmp_path / "out"
    seen = []
    rows, answers = explain_studies(clf, request, out, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (8, 8) and len(rows) == 8
    for row, s in zip(rows, [s for study in request.studies for s in study.slices]):
        expected = clf.predict(load_image(s.path))  # the map's forward pass gives predict's probabilities
        assert row.label == next(iter(expected)) and abs(row.probability - expected[row.label]) < 1e-5
        assert (out / row.overlay).is_file()
    for study, answer in zip(request.studies, answers):
        mine = np.array([r.probabilities for r in rows if r.study == study.name])
        assert answer.slices == len(mine) and answer.rule == RULE
        assert np.allclose(answer.probabilities, mine.mean(axis=0), atol=1e-9)
        assert answer.label == clf.labels[int(np.argmax(mine.mean(axis=0)))]
    with open(out / SLICES_CSV, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == slice_columns(clf.labels) and len(table) == 8
    assert [r["overlay"] for r in table] == [r.overlay for r in rows]
    with open(out / STUDIES_CSV, newline="") as fh:
        studies = list(csv.DictReader(fh))
    assert list(studies[0]) == study_columns(clf.labels)
    assert [(s["study"], s["answer"], s["rule"]) for s in studies] == [(a.study, a.label, RULE) for a in answers]


# ---- bad input: one line each, refused before anything is written ----------------------------------------------

def zip_slip(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(png(tmp_path / "src" / "ok.png"), "ok.png")
        zf.write(png(tmp_path / "src" / "x.png"), "../../outside.png")
    return [archive]


def big_zip(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.dcm", b"\0" * 3_000_000)  # compresses to a few kB; unpacks over the test's limit (2 MB)
    return [archive]


def mixed_sizes(tmp_path):
    png(tmp_path / "s" / "a.png", 32)
    png(tmp_path / "s" / "b.png", 48)
    return [tmp_path / "s"]


def dicom_with_images(tmp_path):
    dcm(tmp_path / "s" / "a.dcm", 1)
    png(tmp_path / "s" / "b.png")
    return [tmp_path / "s"]


def missing_slices(tmp_path):
    for n in (1, 2, 4, 5):
        dcm(tmp_path / "s" / f"{n}.dcm", n)
    return [tmp_path / "s"]


def no_files(tmp_path):
    (tmp_path / "empty").mkdir()
    return [tmp_path / "empty"]


def thousand_files(tmp_path):
    data = io.BytesIO()
    Image.new("RGB", (8, 8)).save(data, format="PNG")
    for i in range(1000):
        (tmp_path / "s").mkdir(exist_ok=True)
        (tmp_path / "s" / f"{i:04d}.png").write_bytes(data.getvalue())
    return [tmp_path / "s"]


def a_report(tmp_path):
    dcm(tmp_path / "s" / "1.dcm", 1)
    report(tmp_path / "s" / "report.dcm")
    return [tmp_path / "s"]


BAD = {
    "zip-slip": (zip_slip, r"evil\.zip: member '\.\./\.\./outside\.png' points outside the archive"),
    "zip over the size limit": (big_zip, r"big\.zip: unpacks to 3\.0 MB, over the limit of 2\.0 MB"),
    "mixed sizes": (mixed_sizes, r"mixes slice sizes: 32x32 \(.*a\.png\) and 48x48 \(.*b\.png\)"),
    "DICOM with images": (dicom_with_images, r"mixes 1 DICOM file\(s\) with 1 other image\(s\)"),
    "missing slices": (missing_slices, r"1 slice\(s\) missing from the series \(InstanceNumber 3 of 1-5\)"),
    "0 files": (no_files, r"^no slices: no image, DICOM or zip file was given$"),
    "1,000 files": (thousand_files, r"^1,000 files, over the limit of 500 slices a request"),
    "a report without pixels": (a_report, r"report\.dcm: DICOM file has no pixel data \(a report"),
}
LIMITS = Limits(bytes=2_000_000)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line(case, tmp_path):
    make, message = BAD[case]
    with pytest.raises(StudyError, match=message) as info:
        read_studies(make(tmp_path), tmp_path / "work", LIMITS)
    assert "\n" not in str(info.value) and STUDY_UID not in str(info.value) and SERIES_UID not in str(info.value)


@pytest.mark.parametrize("case", ["zip-slip", "missing slices", "a report without pixels", "0 files"])
def test_bad_input_in_the_cli_is_one_stderr_line_and_nothing_written(case, random_model, tmp_path, capsys):
    make, message = BAD[case]
    inputs = [str(p) for p in make(tmp_path)]
    out = tmp_path / "out"
    assert main(["explain", str(random_model), *inputs, "--by-study", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    assert not out.exists() and not (tmp_path / "outside.png").exists()


def test_the_cli_answers_each_study(study_dir, random_model, tmp_path, capsys, one_torch_thread):
    out = tmp_path / "out"
    assert main(["explain", str(random_model), str(study_dir), "--by-study", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "3 studies, 8 slices" in text and RULE in text and STUDY_UID not in text and SERIES_UID not in text
    with open(out / STUDIES_CSV, newline="") as fh:
        studies = list(csv.DictReader(fh))
    assert [s["slices"] for s in studies] == ["3", "2", "3"]
    for s in studies:
        assert f"{s['study']}: {s['answer']}" in text
    assert len(list((out / "overlays").rglob("*.gradcam.png"))) == 8
    assert main(["explain", str(random_model), str(study_dir), "--by-study", "--faithfulness", "--out",
                 str(tmp_path / "o2")]) == 2
    assert "--by-study" in capsys.readouterr().err


# ---- the app's Study tab -----------------------------------------------------------------------------------------

def test_the_study_tab_answers_uploads(served, tmp_path, one_torch_thread):
    paths = [str(png(tmp_path / "up" / f"slice{i}.png", seed=i)) for i in range(3)]
    text, table, gallery, downloads, overlays, chosen = StudyEndpoint(served).study(paths[:2], paths[2:])
    assert "**upload** (image, 3 slices)" in text and RULE in text
    assert [row[:3] for row in table] == [["upload", i + 1, f"slice{i}.png"] for i in range(3)]
    assert len(table[0]) == len(TABLE_COLUMNS) and len(gallery) == 3 and chosen == gallery[0][0]
    assert [Path(d).name for d in downloads] == ["slices.csv", "studies.csv", "overlays.zip"]
    with zipfile.ZipFile(downloads[2]) as zf:
        assert zf.namelist() == [row[-1] for row in table]  # the table's overlay column names the files
    assert all(Path(p).is_file() for p in overlays) and str(tmp_path) not in Path(downloads[0]).read_text()


def test_the_study_tab_answers_a_dicom_series_by_its_hash(served, tmp_path, one_torch_thread):
    folder = [str(dcm(tmp_path / "dir" / f"{n}.dcm", n)) for n in (2, 1)]
    text, table, *_ = StudyEndpoint(served).study(None, folder)
    assert "(dicom, 2 slices)" in text and STUDY_UID not in text and SERIES_UID not in text
    assert [row[2] for row in table] == ["1.dcm", "2.dcm"] and table[0][0].startswith("series ")


@pytest.mark.parametrize("case", ["1,000 files", "DICOM with images"])
def test_the_study_tab_refuses_with_one_line(case, served, tmp_path):
    make, message = BAD[case]
    folder = make(tmp_path)[0]
    files = [str(p) for p in sorted(folder.iterdir())]
    with pytest.raises(gr.Error, match=message.lstrip("^")) as info:
        StudyEndpoint(served, LIMITS).study(files, None)
    assert "\n" not in info.value.message and str(tmp_path) not in info.value.message


def test_the_study_tab_refuses_an_empty_click(served):
    with pytest.raises(gr.Error, match="no slices"):
        StudyEndpoint(served).study(None, None)


def test_the_study_endpoint_through_the_running_app(served, tmp_path, one_torch_thread):
    """/study through gradio_client: a zip of two slices uploaded, the answers, table and downloads back; a zip-slip
    refused with its one line."""
    from app_fixtures import launch
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(2):
            zf.write(png(tmp_path / "src" / f"x{i}.png", seed=i), f"x{i}.png")
    app = launch(served)
    try:
        client = Client(app.url, verbose=False)
        text, table, gallery, downloads, chosen = client.predict([handle_file(str(archive))], [],
                                                                 api_name="/study")
        assert "**study** (image, 2 slices)" in text and RULE in text
        assert [row[2] for row in table["data"]] == ["study/x0.png", "study/x1.png"] and len(gallery) == 2
        assert sorted(Path(d).name for d in downloads) == ["overlays.zip", "slices.csv", "studies.csv"]
        with pytest.raises(AppError, match="points outside the archive"):
            client.predict([handle_file(str(zip_slip(tmp_path)[0]))], [], api_name="/study")
    finally:
        app.demo.close()
