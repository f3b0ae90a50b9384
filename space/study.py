"""The Study tab's endpoint: many slices (several files, a folder, a zip, a DICOM series) answered per slice and
per study, with the rule of the study's answer stated.

    study = StudyEndpoint(served)          # once, before the app launches
    study.study(files, folder)             # /study: answers, slice table, gallery, downloads, overlays
    study.pick(overlays, event)            # private: a row of the table selected shows its overlay

The route is the app's three steps. Check, on the CPU: `hub.study.read_studies` gathers the uploads, groups
them (DICOM by series, hashed; images as one study) and refuses a bad request with one line before any
model work. Model: Grad-CAM of every slice, CHUNK slices a call (one GPU call each under ZeroGPU), the
progress bar moving after each. Rendering: each overlay as a PNG, the table (its overlay column names the
file in overlays.zip, as slices.csv does), the answers, the most confident slices' gallery, and slices.csv,
studies.csv and overlays.zip to download.
"""
from __future__ import annotations

import io
import math
import tempfile
import zipfile
from pathlib import Path
from typing import Optional

import gradio as gr
from PIL import Image

from hub.errors import StudyError, UserError
from hub.explain.explanation import Explanation
from hub.study import (
    RULE,
    Limits,
    Request,
    SliceRow,
    StudyAnswer,
    explain_slices,
    iter_images,
    overlay_name,
    read_studies,
    slice_row,
    slices_csv,
    studies_csv,
    study_answer,
)
from space import handlers, memory, outputs
from space.serving import DRAW_SECONDS_PER_MEGAPIXEL, GPU_MAX_SECONDS, Served, gpu_seconds, on_gpu

METHOD = "gradcam"     # one pass a slice: a 20-slice study answers in seconds on a CPU
OPACITY = 0.5
CHUNK = 16             # slices a model call (a ZeroGPU call each); the progress bar moves after each
GALLERY_SIZE = 8       # the most confident slices shown
TABLE_COLUMNS = ("study", "#", "slice", "label", "probability", "overlay")
UPLOAD = "upload"      # the study of loose uploaded images (DICOM files go by their series)


def run_slices(served: Served, images: list[Image.Image]) -> list[Explanation]:
    """The model work of one chunk: each slice's Grad-CAM, whose forward pass gives its probabilities."""
    return explain_slices(handlers.require(served), images, METHOD)


def chunk_seconds(served: Served, images: list[Image.Image]) -> int:
    """Seconds of GPU a chunk asks for: start-up and one forward pass a slice, and each map resized to its slice."""
    w, h = images[0].size
    drawing = math.ceil(DRAW_SECONDS_PER_MEGAPIXEL * w * h / 1e6 * len(images))
    return min(GPU_MAX_SECONDS, gpu_seconds(served, "classify", (0, 0), len(images)) + drawing)


def answers_text(request: Request, answers: list[StudyAnswer]) -> str:
    """Each study's answer in Markdown, the rule that made it, and what was skipped."""
    lines = [f"- **{handlers.md_escape(a.study)}** ({a.kind}, {a.slices} slice{'s' * (a.slices != 1)}): "
             f"**{handlers.md_escape(a.label)}**, mean probability {a.probability:.3f}" for a in answers]
    text = "\n".join(lines) + f"\n\nRule: {RULE}."
    if request.skipped:
        names = ", ".join(handlers.md_escape(n) for n in request.skipped[:5])
        text += f"\n\nSkipped, not images: {names}{', ...' if len(request.skipped) > 5 else ''}"
    return text


def overlays_zip(files: list[tuple[str, str]]) -> bytes:
    """(name in the archive, PNG path) as one zip (PNGs are stored: they are compressed already)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, path in files:
            zf.write(path, name)
    return buf.getvalue()


class StudyEndpoint:
    """The Study tab of the app for one served model."""

    def __init__(self, served: Served, limits: Limits = Limits()):
        self.served, self.limits = served, limits
        self.trim = memory.Trimmer()
        self.slices_on_gpu = on_gpu(lambda images: run_slices(served, images),
                                    lambda images: chunk_seconds(served, images))

    def study(self, files: Optional[list[str]], folder: Optional[list[str]], progress=gr.Progress()) -> tuple:
        """/study: the answers with their rule, the slice table, the gallery, the downloads, the overlays' files."""
        try:
            return self.answer([*(files or []), *(folder or [])], progress)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        finally:
            self.trim()

    def answer(self, paths: list[str], progress) -> tuple:
        clf = handlers.require(self.served)
        with tempfile.TemporaryDirectory(prefix="study-") as work:
            try:
                request = read(paths, work, self.limits)
            except StudyError as exc:
                raise UserError(str(exc)) from None
            rows: list[SliceRow] = []
            pngs: list[str] = []
            answers: list[StudyAnswer] = []
            progress((0, request.slices), desc="slices", unit="slices")
            for k, study in enumerate(request.studies):
                mine: list[SliceRow] = []
                pairs = list(iter_images(study.slices))  # decoded on the CPU, handed to the model call in chunks
                for start in range(0, len(pairs), CHUNK):
                    chunk = pairs[start:start + CHUNK]
                    for j, ((s, _), e) in enumerate(zip(chunk, self.slices_on_gpu([im for _, im in chunk]))):
                        index = start + j + 1
                        mine.append(slice_row(study, index, s, e, clf.labels, overlay_name(k, study, index, s,
                                                                                          METHOD)))
                        pngs.append(outputs.png(e.overlay(OPACITY), f"slice-{index}"))
                    progress((len(rows) + len(mine), request.slices), desc="slices", unit="slices")
                rows += mine
                answers.append(study_answer(study, mine, clf.labels))
        table = [[r.study, r.index, r.slice, r.label, round(r.probability, 4), r.overlay] for r in rows]
        best = sorted(range(len(rows)), key=lambda i: -rows[i].probability)[:GALLERY_SIZE]
        gallery = [(pngs[i], f"{rows[i].study} #{rows[i].index} {rows[i].slice}: {rows[i].label} "
                             f"{rows[i].probability:.3f}") for i in best]
        downloads = [outputs.file(slices_csv(rows, clf.labels), "slices.csv"),
                     outputs.file(studies_csv(answers, clf.labels), "studies.csv"),
                     outputs.file(overlays_zip([(r.overlay, p) for r, p in zip(rows, pngs)]), "overlays.zip")]
        return answers_text(request, answers), table, gallery, downloads, pngs, pngs[best[0]]

    def pick(self, overlays: Optional[list[str]], evt: gr.SelectData) -> Optional[str]:
        """A row of the table selected: its slice's overlay."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        return overlays[row] if overlays and 0 <= row < len(overlays) else None


def read(paths: list[str], workdir: str, limits: Limits) -> Request:
    """`hub.study.read_studies` of the uploads: loose images are one study, and every file is called by the name
    it was uploaded with (never the temporary path)."""
    return read_studies(paths, workdir, limits, group=UPLOAD, names={str(p): Path(p).name for p in paths})
