"""The app's endpoints, one method each, every one the same route read top to bottom: check the request on
the CPU, run the model (on a GPU under ZeroGPU: the one step that asks for one), render the answer.

    api = Endpoints(served, examples, max_batch_size=1)  # once, before the app launches (>1: batched /classify)
    api.classify(image)                                  # /classify: label -> probability
    api.gradcam(image, target, opacity)                  # /gradcam: the map first...
    api.gradcam_faithfulness(last)                       # /gradcam_faithfulness: ...then its figures
    api.scorecam(image, target, opacity), api.scorecam_faithfulness(last)
    api.compare(image, target, opacity)                  # /compare: both maps, their figures, agreement
    api.restyle(last, opacity), api.pick(event)          # private: the opacity slider, a click on a sample
    api.open_file(file)                                  # private: a DICOM (or any image) file -> PNG preview
    api.valid_image(image), api.valid_explain(image, target, opacity), api.valid_last(last)   # validators

The steps are `handlers` functions (check_*, run_*, result/compare_result), the GPU wrapper and its
durations come from `serving`, the pictures leave as PNG files (`outputs.png`). When the image is an
example with an expert annotation beside it (`samples.ExpertRegions`), its region is drawn on the pictures
and the text says whether the map points into it. A `UserError` becomes a `gr.Error` with its one-line
message: no traceback reaches a user.

`valid_*` are the model endpoints' Gradio validators (`validator=` in `space.app`): the checks that decode
nothing (`handlers.check_upload` reads the file's header) refuse a bad request in /queue/join, before it takes
a queue slot, with the endpoint's own line (gradio_client: `ValidationError`). They are coroutines: Gradio
awaits one on its event loop, where a plain function waits for a worker thread; as plain functions they made
/queue/join outlive gradio_client's 5 s timeout with 12 concurrent clients on 2 busy cores (tests/test_app.py's
concurrency tests, httpx.ReadTimeout), as coroutines those tests pass on the same cores. MCP tool calls go
through the queue too, so through the validators. Every check also runs in the endpoint itself, which is
callable without Gradio and holds the checks that need the pixels (a truncated file, the pixel limit).
The docstrings of the public endpoints are their API and MCP tool descriptions (Gradio reads `Args:`).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import gradio as gr

from hub.errors import UserError
from space import handlers, memory, outputs, samples
from space.batching import Batcher
from space.handlers import ExplainResult
from space.serving import Served, gpu_seconds, on_gpu

Examples = Optional[list[tuple[str, str]]]  # (path, caption) of the sample images


def endpoint(method: Callable) -> Callable:
    """An endpoint's error handling: a UserError becomes a gr.Error with the same message (no traceback);
    after each call, freed heap pages go back to the OS (at most every few seconds: `memory.Trimmer`)."""
    @functools.wraps(method)
    def wrapper(self: Endpoints, *args):
        try:
            return method(self, *args)
        except UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        finally:
            self.trim()
    return wrapper


def passed(check: Callable[[], object]) -> dict:
    """One input's validation: invalid with the UserError message of `check`, else valid."""
    try:
        check()
    except UserError as exc:
        return gr.validate(False, str(exc))
    return gr.validate(True, "")


class Endpoints:
    """Every endpoint of the app for one served model (or its load error) and its sample images."""

    def __init__(self, served: Served, examples: Examples = None, max_batch_size: int = 1):
        self.served = served
        self.examples = list(examples or [])
        self.regions = samples.ExpertRegions(self.examples)
        self.trim = memory.Trimmer()  # one per app: trims are rate-limited across all its requests
        # The model calls, wrapped once here: ZeroGPU takes its GPU functions before the app launches, and asks
        # for the seconds each call's own work needs. On a CPU or plain CUDA they are the plain functions.
        self.classify_on_gpu = on_gpu(lambda images: handlers.classify_batch(served, images),
                                      lambda images: gpu_seconds(served, "classify", (0, 0), len(images)))
        # Two steps per CAM tab, each its own GPU call: the map (Grad-CAM ~1 pass, the user waits for it), then
        # its faithfulness figures (62 passes: 90% of a Grad-CAM request's time on a CPU), shown when ready.
        self.map_on_gpu = on_gpu(lambda request: handlers.run_explain(served, request, figures=False),
                                 lambda request: gpu_seconds(served, request.method, request.image.size))
        self.figures_on_gpu = on_gpu(lambda e: handlers.run_figures(served, e),
                                     lambda e: gpu_seconds(served, "faithfulness", (0, 0)))
        self.compare_on_gpu = on_gpu(lambda request: handlers.run_compare(served, request),
                                     lambda request: gpu_seconds(served, "compare", request.image.size))
        # /classify requests that wait together share one forward pass (space/batching.py); each request is
        # checked in its own event first, so a bad upload fails only itself.
        self.batched = Batcher(self.classify_on_gpu, max_batch_size) if max_batch_size > 1 else None

    @endpoint
    def classify(self, image: Optional[str]) -> dict[str, float]:
        """Classify an image with the served model: the probability of every class, most likely first.

        Args:
            image: an image file (PNG, JPEG, TIFF, 16-bit...) or a single-frame DICOM file (.dcm or no extension).
        Returns:
            the top class and every class's probability.
        """
        checked = handlers.check_image(self.served, image)
        if self.batched is not None:
            return self.batched(checked)
        return self.classify_on_gpu([checked])[0]

    @endpoint
    def gradcam(self, image: Optional[str], target: Optional[str], opacity: float) -> tuple:
        """Explain the model's answer with a Grad-CAM heatmap (one backward pass): where the image made it choose
        the class. Its faithfulness figures follow from gradcam_faithfulness in the same session.

        Args:
            image: an image file (PNG, JPEG, TIFF, 16-bit...) or a single-frame DICOM file (.dcm or no extension).
            target: the class to explain: "" for the predicted class, a class name, or "A vs B" (A rather than B).
            opacity: how strongly the heatmap covers the image in the overlay, 0 to 1.
        Returns:
            [heatmap, overlay] PNGs, the overlay PNG, a Markdown summary, details (class, probability), no curves yet.
        """
        return self.explain_map("gradcam", image, target, opacity)

    @endpoint
    def gradcam_faithfulness(self, last: Optional[ExplainResult]) -> tuple:
        """Measure the faithfulness of this session's last Grad-CAM map: deletion and insertion areas and curves
        and the random and centre baselines. Needs a gradcam call first in the same session (an MCP call has none:
        use compare, which measures both maps in one call).

        Returns:
            a Markdown summary, details with 'faithfulness', the deletion/insertion curves as a PNG.
        """
        return self.measure(last)

    @endpoint
    def scorecam(self, image: Optional[str], target: Optional[str], opacity: float) -> tuple:
        """Explain the model's answer with a Score-CAM heatmap (masked forward passes; fast mode on a CPU, exact
        on a GPU; details say which). Its faithfulness figures follow from scorecam_faithfulness in the same session.

        Args:
            image: an image file (PNG, JPEG, TIFF, 16-bit...) or a single-frame DICOM file (.dcm or no extension).
            target: the class to explain: "" for the predicted class, a class name, or "A vs B" (A rather than B).
            opacity: how strongly the heatmap covers the image in the overlay, 0 to 1.
        Returns:
            [heatmap, overlay] PNGs, the overlay PNG, a Markdown summary, details (mode, class, ...), no curves yet.
        """
        return self.explain_map("scorecam", image, target, opacity)

    @endpoint
    def scorecam_faithfulness(self, last: Optional[ExplainResult]) -> tuple:
        """Measure the faithfulness of this session's last Score-CAM map: deletion and insertion areas and curves
        and the random and centre baselines. Needs a scorecam call first in the same session (an MCP call has none:
        use compare, which measures both maps in one call).

        Returns:
            a Markdown summary, details with 'faithfulness', the deletion/insertion curves as a PNG.
        """
        return self.measure(last)

    def explain_map(self, method: str, image: Optional[str], target: Optional[str], opacity: float) -> tuple:
        """A CAM tab's first step: (heatmap, overlay) for the slider, the overlay to download, the summary, the
        details, no curves yet, and the result the session keeps (for the figures and the opacity slider)."""
        request = handlers.check_explain(self.served, image, method, target, opacity, self.regions.of(image))
        e = self.map_on_gpu(request)
        r = handlers.result(e, request.opacity, request.region)
        overlay = outputs.png(r.overlay)
        return (outputs.png(r.heatmap, "heatmap"), overlay), overlay, r.summary, r.details, None, r

    def measure(self, last: Optional[ExplainResult]) -> tuple:
        """A CAM tab's second step: the summary, details and curves of the last map with its figures, kept."""
        e = self.figures_on_gpu(handlers.check_figures(self.served, last))
        r = handlers.with_figures(last, e)
        return r.summary, r.details, outputs.png(r.curves, "curves"), r

    @endpoint
    def compare(self, image: Optional[str], target: Optional[str], opacity: float) -> tuple:
        """Explain one class with both Grad-CAM and Score-CAM, measure both maps' faithfulness (deletion,
        insertion, baselines) and how far they agree (rank correlation, overlap of their top 20%).

        Args:
            image: an image file (PNG, JPEG, TIFF, 16-bit...) or a single-frame DICOM file (.dcm or no extension).
            target: the class to explain: "" for the predicted class, a class name, or "A vs B" (A rather than B).
            opacity: how strongly the heatmaps cover the image in the overlays, 0 to 1.
        Returns:
            the Grad-CAM and Score-CAM overlays and curves as PNGs, a Markdown table, every number.
        """
        request = handlers.check_explain(self.served, image, "compare", target, opacity, self.regions.of(image))
        grad, score = self.compare_on_gpu(request)
        r = handlers.compare_result(grad, score, request.opacity, request.region)
        return (outputs.png(r.gradcam.overlay), outputs.png(r.scorecam.overlay),
                outputs.png(r.gradcam.curves, "curves"), outputs.png(r.scorecam.curves, "curves"), r.table,
                {"gradcam": r.gradcam.details, "scorecam": r.scorecam.details, "agreement": r.agreement})

    @endpoint
    def restyle(self, last: Optional[ExplainResult], opacity: float) -> tuple:
        """The opacity slider: the session's last map redrawn at `opacity` (no model call)."""
        if last is None:  # nothing computed yet in this session
            return gr.skip(), gr.skip()
        heat, over = handlers.render(last.explanation, opacity, last.region)
        overlay = outputs.png(over)
        return (outputs.png(heat, "heatmap"), overlay), overlay

    def pick(self, evt: gr.SelectData) -> str:
        """A click on a sample: its file becomes the shared input image."""
        return self.examples[evt.index][0]

    @endpoint
    def open_file(self, file: Optional[str]) -> str:
        """A file from the file input (DICOM, or any image the browser's image widget cannot take) as the PNG the
        other endpoints read: the windowed, 8-bit slice they would decode from it (`handlers.read_image`), shown
        in the image widget. Needs no model."""
        return outputs.png(handlers.read_image(file), preview_name(file))

    # ---- validators: the checks that decode nothing, run by Gradio before a request queues -----------------
    # async on purpose (why, and what it measured: the module docstring); a header read does not block the loop.

    async def valid_image(self, image: Optional[str]) -> dict:
        """/classify's validator (one input: one gr.validate, not a list, which Gradio would take as the value)."""
        return passed(lambda: handlers.check_upload(self.served, image))

    async def valid_explain(self, image: Optional[str], target: Optional[str], opacity: float) -> list[dict]:
        """The validator of /gradcam, /scorecam and /compare (the class is checked once a model is loaded)."""
        labels = self.served.labels
        return [passed(lambda: handlers.check_upload(self.served, image)),
                passed(lambda: self.served.ready and handlers.target_label(target, labels)),
                passed(lambda: handlers.check_opacity(opacity))]

    async def valid_last(self, last: Optional[ExplainResult]) -> dict:
        """The validator of the faithfulness steps: a model, and a map made in this session."""
        return passed(lambda: handlers.check_figures(self.served, last))


def preview_name(file: Optional[str]) -> str:
    """The preview's file name: the upload's own stem, in letters, digits, '.', '-' and '_' only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(file or "").stem).strip("._") if file else ""
    return stem or "preview"
