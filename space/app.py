"""The app's layout: a shared upload, then Classify, Grad-CAM, Score-CAM, Compare and Examples tabs.

Wiring only: the work is in `handlers` (pure functions), the model in `serving`, the sample images
in `samples`, the upload widget in `upload`; `python -m space` (space/__main__.py) starts it.
"""
from __future__ import annotations

import functools
import html
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import gradio as gr

from hub.errors import UserError
from space import handlers, memory, samples
from space.batching import Batcher
from space.serving import Served, gpu_seconds, on_gpu
from space.upload import ImagePath

TITLE = "Explainable image classifier"
DISCLAIMER = ("**Research use only, not a medical device.** The predictions and heatmaps are not a diagnosis "
              "and must not be used for clinical decisions.")
QUEUE_SIZE = 16        # waiting requests beyond this are refused with "queue full", not piled up
CONCURRENCY = 2        # model calls at once; CPU inference already uses every core
MAX_BATCH_SIZE = 8     # /classify requests waiting together are answered by one forward pass
MODEL_CALLS = "model"  # one concurrency group for every endpoint that runs the model: the limit is global
STATE_SECONDS = 900    # how long a session keeps its last explanation (for the opacity slider)
MAX_FILE_SIZE = "64mb"


def ui(fn: Callable, trim: Optional[Callable[[], bool]] = None) -> Callable:
    """Wrap a handler for Gradio: a UserError becomes a gr.Error with the same message (no traceback);
    `trim` (a memory.Trimmer) runs after each call to hand freed heap pages back to the OS."""
    @functools.wraps(fn)
    def wrapper(*args):
        try:
            return fn(*args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        finally:
            if trim is not None:
                trim()
    return wrapper


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
                  f"Score-CAM {'exact' if k == 'exact' else f'fast, k = {k} channels'}",
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


def png(image, name: str = "overlay") -> str:
    """Save a PIL image as PNG in Gradio's cache (cleaned by `delete_cache`) and return its path.

    Every image output goes through here as a file path, not as a PIL image: Gradio saves PIL
    outputs to a path named by their content with a plain write, so two requests with the same
    answer at the same moment could serve each other a half-written file (bench/load.py hit it).
    Here the file is written under a temporary name and renamed into place.
    """
    import hashlib
    import io

    from gradio.utils import get_upload_folder

    from hub.files import write_atomic

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    folder = Path(get_upload_folder()) / hashlib.sha256(data).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if not path.exists():
        write_atomic(path, data)
    return str(path)


def cam_tab(served: Served, image: ImagePath, method: str, targets: list, trim: Callable[[], bool]) -> None:
    """One method's tab: class, opacity, run; heatmap vs overlay slider, PNG download, time."""
    with gr.Row():
        target = gr.Dropdown(targets, value=handlers.PREDICTED, label="Class to explain (or A vs B)", scale=2)
        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity (redraws, no recompute)",
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

    # Two steps, each its own GPU call on ZeroGPU: the map (Grad-CAM ~1 pass, the user waits for it), then
    # its faithfulness figures (62 passes: 90% of a Grad-CAM request's time on a CPU), shown when ready.
    on_device = on_gpu(lambda request: handlers.run_explain(served, request, figures=False),
                       lambda request: gpu_seconds(served, method, request.image.size))
    measure = on_gpu(lambda e: handlers.run_figures(served, e),
                     lambda e: gpu_seconds(served, "faithfulness", (0, 0)))

    def compute(image, target, opacity):
        r = on_device(handlers.check_explain(served, image, method, target, opacity))
        overlay = png(r.overlay)
        return (png(r.heatmap, "heatmap"), overlay), overlay, r.summary, r.details, None, r.explanation

    def figures(explanation):
        e = measure(handlers.check_figures(served, explanation))
        return handlers.summary(e), handlers.details(e), png(handlers.curves_image(e), "curves"), e

    def restyle(explanation, opacity):
        if explanation is None:  # nothing computed yet in this session
            return gr.skip(), gr.skip()
        heat, over = handlers.render(explanation, opacity)
        overlay = png(over)
        return (png(heat, "heatmap"), overlay), overlay

    run.click(ui(compute, trim), [image, target, opacity], [slider, download, info, numbers, curves, last],
              api_name=method, concurrency_id=MODEL_CALLS
              ).success(ui(figures, trim), [last], [info, numbers, curves, last], api_name=f"{method}_faithfulness",
                        concurrency_id=MODEL_CALLS)
    opacity.release(ui(restyle), [last, opacity], [slider, download], api_visibility="private",
                    concurrency_limit=None)


def compare_tab(served: Served, image: ImagePath, targets: list, trim: Callable[[], bool]) -> None:
    """Both methods on one image and class: maps, deletion/insertion curves and figures, baselines, agreement."""
    with gr.Row():
        target = gr.Dropdown(targets, value=handlers.PREDICTED, label="Class to explain (or A vs B)", scale=2)
        opacity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity", scale=2)
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

    def work(request: handlers.ExplainRequest) -> handlers.CompareResult:  # the GPU part on ZeroGPU
        return handlers.run_compare(served, request)

    on_device = on_gpu(work, lambda request: gpu_seconds(served, "compare", request.image.size))

    def compute(image, target, opacity):
        r = on_device(handlers.check_explain(served, image, "compare", target, opacity))
        return (png(r.gradcam.overlay), png(r.scorecam.overlay), png(r.gradcam.curves, "curves"),
                png(r.scorecam.curves, "curves"), r.table,
                {"gradcam": r.gradcam.details, "scorecam": r.scorecam.details, "agreement": r.agreement})

    run.click(ui(compute, trim), [image, target, opacity], [grad, score, grad_curves, score_curves, table, numbers],
              api_name="compare", concurrency_id=MODEL_CALLS)


def classify_tab(served: Served, image: ImagePath, trim: Callable[[], bool], max_batch_size: int) -> None:
    """Top classes of the shared image. Requests that wait together share one forward pass (space/batching.py):
    each is checked in its own event first, so a bad upload fails only itself."""
    run = gr.Button("Classify", variant="primary")
    label = gr.Label(num_top_classes=min(5, len(served.labels) or 1), label="Top classes", elem_id="top-classes")
    on_device = on_gpu(lambda images: handlers.classify_batch(served, images),
                       lambda images: gpu_seconds(served, "classify", (0, 0), len(images)))
    if max_batch_size <= 1:  # one forward pass per request, in the shared model-call group
        run.click(ui(lambda path: on_device([handlers.check_image(served, path)])[0], trim), [image], [label],
                  api_name="classify", concurrency_id=MODEL_CALLS)
        return
    batched = Batcher(on_device, max_batch_size)
    # Its own group: one batch runs at a time (the Batcher), while up to a batch more waits to join the next one.
    run.click(ui(lambda path: batched(handlers.check_image(served, path)), trim), [image], [label],
              api_name="classify", concurrency_id="classify", concurrency_limit=2 * max_batch_size)


def launch_options(examples: Optional[list[tuple[str, str]]]) -> dict:
    """`demo.launch` options every launch shares: the upload size limit, and the examples' folders, which Gradio
    serves only when allowed (on a Space the Hub cache is outside its working and temp folders)."""
    return dict(max_file_size=MAX_FILE_SIZE, allowed_paths=samples.allowed_paths(examples or []))


def build_demo(served: Served, examples: Optional[list[tuple[str, str]]] = None, queue_size: int = QUEUE_SIZE,
               concurrency: int = CONCURRENCY, max_batch_size: int = MAX_BATCH_SIZE) -> gr.Blocks:
    """The app for one served model (or its load error): header, shared upload, one tab per task."""
    targets = [("Predicted class", handlers.PREDICTED)] + [(t, t) for t in handlers.target_choices(served.labels)]
    trim = memory.Trimmer()  # one per app: trims are rate-limited across all its requests
    with gr.Blocks(title=TITLE, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\n{DISCLAIMER}\n\n{card_links(served)}", elem_id="header")
        gr.HTML(error_banner(served), visible=not served.ready)
        image = ImagePath(label="Image (PNG, JPEG, TIFF, ...; greyscale, 16-bit and RGBA work)",
                          sources=["upload", "clipboard"], height=300, elem_id="input-image")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify"):
                classify_tab(served, image, trim, max_batch_size)
            with gr.Tab("Grad-CAM", id="gradcam"):
                cam_tab(served, image, "gradcam", targets, trim)
            with gr.Tab("Score-CAM", id="scorecam"):
                cam_tab(served, image, "scorecam", targets, trim)
            with gr.Tab("Compare", id="compare"):
                compare_tab(served, image, targets, trim)
            with gr.Tab("Examples", id="examples"):
                examples = examples or []
                gr.Markdown("Click a sample to load it as the image above." if examples else
                            "No sample images: this model has no `examples/` folder.")
                gallery = gr.Gallery(examples, columns=6, height="auto", allow_preview=False, label="Samples",
                                     interactive=False, elem_id="samples")

                def pick(evt: gr.SelectData):  # the clicked sample becomes the shared input image
                    return examples[evt.index][0]

                gallery.select(pick, None, image, api_visibility="private")
    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return demo
