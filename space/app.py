"""The app's layout: a shared upload, then Classify, Grad-CAM, Score-CAM, Compare and Examples tabs; a Study tab.

Layout only: each button calls one method of `endpoints.Endpoints` (check, model call, rendering, in that
order, one place per endpoint); the work is in `handlers` (pure functions), the model in `serving`, the
sample images in `samples`, the upload widget in `upload`; `python -m space` (space/__main__.py) starts it.
"""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Optional

import gradio as gr

from hub.explain.cam import SCORECAM_FILL
from space import handlers, samples
from space.endpoints import Endpoints
from space.serving import Served
from space.study import TABLE_COLUMNS, StudyEndpoint
from space.upload import ClassChoice, ImagePath, Opacity

TITLE = "Explainable image classifier"
DISCLAIMER = ("**Research use only, not a medical device.** The predictions and heatmaps are not a diagnosis "
              "and must not be used for clinical decisions.")
QUEUE_SIZE = 16        # waiting requests beyond this are refused with "queue full", not piled up
CONCURRENCY = 2        # model calls at once; CPU inference already uses every core
# /classify requests waiting together answered by one forward pass; 1 = off: on 2 CPU cores batching measured
# 0.88-0.94x of unbatched throughput (docs/benchmarks.md), so it is opt-in (--max-batch-size, MAX_BATCH_SIZE)
MAX_BATCH_SIZE = 1
MODEL_CALLS = "model"  # one concurrency group for every endpoint that runs the model: the limit is global
STATE_SECONDS = 900    # how long a session keeps its last explanation (for the opacity slider)
MAX_FILE_SIZE = "64mb"


def card_links(served: Served) -> str:
    """Markdown naming the served model, the commit it resolved to, and where its card is."""
    if served.is_hub:
        from huggingface_hub import constants

        repo = f"{constants.ENDPOINT}/{served.source}"
        card = f"{repo}/blob/{served.commit}/README.md" if served.commit else repo  # the card of this revision
        parts = [f"Model [**{handlers.md_escape(served.source)}**]({repo}) ([model card]({card}))",
                 f"revision `{html.escape(served.revision or 'main')}`"]
        if served.commit:
            parts.append(f"commit [`{served.commit[:12]}`]({repo}/tree/{served.commit})")
    else:
        parts = [f"Model folder `{html.escape(served.source)}` (model card: `README.md` in that folder)"]
    if served.ready:
        clf = served.classifier
        k = served.max_channels
        parts += [f"device `{clf.device.type}`",
                  f"Score-CAM {'exact' if k == 'exact' else f'fast, k = {k} channels'}, {SCORECAM_FILL} fill",
                  f"classes: {', '.join(handlers.md_escape(label) for label in clf.labels)}"]
    return " · ".join(parts)


def error_banner(served: Served) -> str:
    """A red HTML banner saying why no model is loaded ('' when one is)."""
    if served.ready:
        return ""
    return ('<div id="model-error" role="alert" style="border:2px solid #c0392b;background:#fdecea;color:#7b241c;'
            'padding:12px;border-radius:8px"><b>The model could not be loaded.</b> '
            f"{html.escape(served.error or 'unknown error')}<br>The app is running, but every request "
            "answers with this error until it is restarted with a model that loads.</div>")


def cam_tab(image: ImagePath, method: str, targets: list, api: Endpoints) -> None:
    """One method's tab: class, opacity, run; heatmap vs overlay slider, PNG download, time; then the figures."""
    with gr.Row():
        target = ClassChoice(targets, value=handlers.PREDICTED, label="Class to explain (or A vs B)", scale=2)
        opacity = Opacity(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity (redraws, no recompute)",
                          scale=2, elem_id=f"{method}-opacity")
        run = gr.Button(f"Run {handlers.METHOD_NAMES[method]}", variant="primary", scale=1)
    slider = gr.ImageSlider(label="Raw heatmap | overlay (drag to compare)", format="png", type="pil",
                            elem_id=f"{method}-slider")
    with gr.Row():
        download = gr.DownloadButton("Download overlay PNG", scale=1, elem_id=f"{method}-download")
        info = gr.Markdown(label="summary", elem_id=f"{method}-summary")
    curves = gr.Image(label="Deletion and insertion (faithfulness, measured after the map)", format="png",
                      type="pil", interactive=False, height=220, elem_id=f"{method}-curves")
    with gr.Accordion("Details (JSON)", open=False):
        numbers = gr.JSON(label="details")
    last = gr.State(None, time_to_live=STATE_SECONDS)

    run.click(getattr(api, method), [image, target, opacity], [slider, download, info, numbers, curves, last],
              api_name=method, concurrency_id=MODEL_CALLS, validator=api.valid_explain
              ).success(getattr(api, f"{method}_faithfulness"), [last], [info, numbers, curves, last],
                        api_name=f"{method}_faithfulness", concurrency_id=MODEL_CALLS, validator=api.valid_last)
    opacity.release(api.restyle, [last, opacity], [slider, download], api_visibility="private",
                    concurrency_limit=None)


def compare_tab(image: ImagePath, targets: list, api: Endpoints) -> None:
    """Both methods on one image and class: maps, deletion/insertion curves and figures, baselines, agreement."""
    with gr.Row():
        target = ClassChoice(targets, value=handlers.PREDICTED, label="Class to explain (or A vs B)", scale=2)
        opacity = Opacity(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", scale=2)
        run = gr.Button("Compare", variant="primary", scale=1)
    with gr.Row():
        grad = gr.Image(label="Grad-CAM", format="png", type="pil", interactive=False, elem_id="compare-gradcam")
        score = gr.Image(label="Score-CAM", format="png", type="pil", interactive=False, elem_id="compare-scorecam")
    with gr.Row():
        grad_curves = gr.Image(label="Grad-CAM: deletion and insertion", format="png", type="pil",
                               interactive=False, elem_id="compare-gradcam-curves")
        score_curves = gr.Image(label="Score-CAM: deletion and insertion", format="png", type="pil",
                                interactive=False, elem_id="compare-scorecam-curves")
    table = gr.Markdown(label="summary", elem_id="compare-table")
    with gr.Accordion("Details (JSON)", open=False):
        numbers = gr.JSON(label="details")
    run.click(api.compare, [image, target, opacity], [grad, score, grad_curves, score_curves, table, numbers],
              api_name="compare", concurrency_id=MODEL_CALLS, validator=api.valid_explain)


def classify_tab(served: Served, image: ImagePath, api: Endpoints, max_batch_size: int) -> None:
    """Top classes of the shared image."""
    run = gr.Button("Classify", variant="primary")
    label = gr.Label(num_top_classes=min(5, len(served.labels) or 1), label="Top classes", elem_id="top-classes")
    if max_batch_size <= 1:  # one forward pass per request, in the shared model-call group
        run.click(api.classify, [image], [label], api_name="classify", concurrency_id=MODEL_CALLS,
                  validator=api.valid_image)
        return
    # Its own group: one batch runs at a time (the Batcher), while up to a batch more waits to join the next one.
    run.click(api.classify, [image], [label], api_name="classify", concurrency_id="classify",
              concurrency_limit=2 * max_batch_size, validator=api.valid_image)


def examples_tab(image: ImagePath, examples: list[tuple[str, str]], pick: Callable) -> None:
    """The served model's sample images; a click loads one as the shared image."""
    gr.Markdown("Click a sample to load it as the image above." if examples else
                "No sample images: this model has no `examples/` folder.")
    gallery = gr.Gallery(examples, columns=6, height="auto", allow_preview=False, label="Samples",
                         interactive=False, elem_id="samples")
    gallery.select(pick, None, image, api_visibility="private")


def study_tab(study: StudyEndpoint) -> None:
    """Many slices at once: files, a zip or a DICOM series, or a folder; answers per study, a row per slice."""
    with gr.Row():
        files = gr.File(file_count="multiple", label="Slices: images, DICOM files or a .zip", elem_id="study-files")
        folder = gr.File(file_count="directory", label="...or a folder", elem_id="study-folder")
    run = gr.Button("Answer the study", variant="primary")
    answers = gr.Markdown(label="answers", elem_id="study-answers")
    with gr.Row():
        table = gr.Dataframe(headers=list(TABLE_COLUMNS), interactive=False, scale=3, elem_id="study-table",
                             label="Slices (select a row to see its overlay; 'overlay' names it in overlays.zip)")
        chosen = gr.Image(label="Overlay of the selected slice", type="filepath", interactive=False, scale=2,
                          elem_id="study-overlay")
    gallery = gr.Gallery(label="The most confident slices (Grad-CAM)", columns=4, height="auto",
                         elem_id="study-gallery")
    downloads = gr.File(label="slices.csv, studies.csv, overlays.zip", file_count="multiple", interactive=False,
                        elem_id="study-downloads")
    overlays = gr.State([], time_to_live=STATE_SECONDS)
    run.click(study.study, [files, folder], [answers, table, gallery, downloads, overlays, chosen],
              api_name="study", concurrency_id=MODEL_CALLS)
    table.select(study.pick, [overlays], [chosen], api_visibility="private", concurrency_limit=None)


def launch_options(examples: Optional[list[tuple[str, str]]]) -> dict:
    """`demo.launch` options every launch shares: the upload size limit, the examples' folders, which Gradio
    serves only when allowed (on a Space the Hub cache is outside its working and temp folders), the MCP server."""
    return dict(max_file_size=MAX_FILE_SIZE, allowed_paths=samples.allowed_paths(examples or []),
                mcp_server=True)  # the endpoints as MCP tools, at /gradio_api/mcp/ (gradio[mcp])


def build_demo(served: Served, examples: Optional[list[tuple[str, str]]] = None, queue_size: int = QUEUE_SIZE,
               concurrency: int = CONCURRENCY, max_batch_size: int = MAX_BATCH_SIZE) -> gr.Blocks:
    """The app for one served model (or its load error): header, shared upload, one tab per task."""
    api = Endpoints(served, examples, max_batch_size)
    targets = [("Predicted class", handlers.PREDICTED)] + [(t, t) for t in handlers.target_choices(served.labels)]
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{DISCLAIMER}\n\n{card_links(served)}", elem_id="header")
        gr.HTML(error_banner(served), visible=not served.ready)
        with gr.Row():
            image = ImagePath(label="Image (PNG, JPEG, TIFF, ...; greyscale, 16-bit and RGBA work)",
                              sources=["upload", "clipboard"], height=300, elem_id="input-image", scale=3)
            # The image widget takes image/* only; DICOM comes here. No file_types: a DICOM export is often named
            # IM0001 or by its UID, with no extension to filter on, so the loader decides (by its DICM marker).
            file = gr.File(label="...or a file: DICOM (.dcm, or no extension) or any image", type="filepath",
                           height=300, elem_id="input-file", scale=1)
        file.upload(api.open_file, [file], [image], api_visibility="private")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                classify_tab(served, image, api, max_batch_size)
            with gr.Tab("Grad-CAM", id="gradcam"):
                cam_tab(image, "gradcam", targets, api)
            with gr.Tab("Score-CAM", id="scorecam"):
                cam_tab(image, "scorecam", targets, api)
            with gr.Tab("Compare", id="compare"):
                compare_tab(image, targets, api)
            with gr.Tab("Examples", id="examples"):
                examples_tab(image, api.examples, api.pick)
            with gr.Tab("Study", id="study"):
                study_tab(StudyEndpoint(served))
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo
