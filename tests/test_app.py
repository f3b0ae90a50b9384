"""The Gradio app (space/): pure handlers, every named endpoint through gradio_client, concurrency and batching,
bad uploads, model-load failures and the offline cache, a model pinned on the test Hub, ZeroGPU durations.

Quick models keep this file fast: an untrained 64 px ResNet50 for the app plumbing (app_fixtures)
and the session's `tiny_models` where a model has to come from training and the Hub.
"""
from __future__ import annotations

import functools
import gc
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from app_fixtures import LABELS, ROOT, SCORECAM_K, free_port, launch, random_model_folder
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, ValidationError
from PIL import Image

from hub import from_pretrained
from hub.explain.cam import FAST_CHANNELS, resolve_max_channels
from hub.publish import push
from space import app, handlers, serving
from space import samples as sample_images

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ENDPOINTS = ("/classify", "/gradcam", "/gradcam_faithfulness", "/scorecam", "/scorecam_faithfulness", "/compare",
             "/study")  # /study: tests/test_study.py calls it
# A refusal: by the endpoint itself (AppError), or by an event's validator before the queue (ValidationError)
REFUSED = (AppError, ValidationError)
# gradio 6.31 calls pandas APIs that pandas 3 deprecates, inside its queue: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


# ---- files users upload ------------------------------------------------------------------------------------------

def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def bomb_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's calling card)."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """An 80x40 JPEG whose EXIF orientation (6) says: show it rotated, 40 wide and 80 high."""
    img = Image.new("RGB", (80, 40), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


BAD_UPLOADS = {  # file name -> (bytes, what the message must say)
    "notes.png": (b"hello, this is a text file and not an image\n" * 20, "not an image file"),
    "truncated.png": (None, "corrupt or truncated"),
    "empty.png": (b"", "empty"),
    "bomb.png": (None, "too large"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, sample_paths) -> dict[str, tuple[Path, str]]:
    out = tmp_path_factory.mktemp("bad-uploads")
    whole = sample_paths[0].read_bytes()
    files = {}
    for name, (data, message) in BAD_UPLOADS.items():
        if name == "truncated.png":
            data = whole[: len(whole) // 2]
        elif name == "bomb.png":
            data = bomb_png()
        (out / name).write_bytes(data)
        files[name] = (out / name, message)
    return files


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory, sample_paths) -> dict[str, tuple[Path, tuple[int, int]]]:
    """Greyscale, RGBA, 16-bit and EXIF-rotated images, with the (height, width) they should have."""
    out = tmp_path_factory.mktemp("odd-uploads")
    base = Image.open(sample_paths[0]).convert("RGB")
    ramp = (np.arange(60 * 50, dtype=np.uint32).reshape(50, 60) * 7 % 4096).astype(np.uint16)  # 12-bit scanner
    files = {"grey.png": png_bytes(base.convert("L")), "rgba.png": png_bytes(base.convert("RGBA")),
             "sixteen.png": png_bytes(Image.fromarray(ramp)), "rotated.jpg": exif_rotated_jpeg()}
    shapes = {"grey.png": (96, 96), "rgba.png": (96, 96), "sixteen.png": (50, 60), "rotated.jpg": (80, 40)}
    result = {}
    for name, data in files.items():
        (out / name).write_bytes(data)
        result[name] = (out / name, shapes[name])
    return result


# ---- pure handlers ----------------------------------------------------------------------------------------------

def test_classify_uses_the_models_own_labels(served, random_model, sample_paths):
    probs = handlers.classify(served, str(sample_paths[0]))
    assert sorted(probs) == sorted(json.loads((random_model / "config.json").read_text())["label_names"])
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    assert probs == pytest.approx(served.classifier.predict(sample_paths[0]))


def test_explain_both_methods_say_how_they_ran(served, sample_paths):
    path = str(sample_paths[1])
    grad = handlers.explain(served, path, "gradcam")
    assert grad.heatmap.size == grad.overlay.size == (96, 96)
    assert grad.details["mode"] == "gradient" and "Grad-CAM" in grad.summary and " s**" in grad.summary
    score = handlers.explain(served, path, "scorecam", target="checker", opacity=0.8)
    assert score.explanation.label == "checker" and score.details["label"] == "checker"
    assert score.details["mode"] == "fast" and score.details["masked_passes"] == SCORECAM_K
    assert score.details["fill"] == "blur" and "what a mask hides blurred" in score.summary
    assert f"fast Score-CAM: {SCORECAM_K} masked passes" in score.summary
    f = score.details["faithfulness"]
    assert 0.0 <= f["deletion"] <= 1.0 and 0.0 <= f["insertion"] <= 1.0 and isinstance(f["beats_baselines"], bool)
    assert set(f["baselines"]) == {"random", "centre"} and len(f["curves"]["deletion"]) == 11
    assert "deletion **" in score.summary and "beats the baselines" in score.summary
    json.dumps(score.details)                                    # the API answer is plain JSON
    heat, over = handlers.render(score.explanation, 0.0)  # opacity 0: the overlay is the image itself
    assert np.array_equal(np.asarray(over), np.asarray(score.explanation.image))
    assert served.max_channels == SCORECAM_K
    assert resolve_max_channels("auto", served.classifier.device) == FAST_CHANNELS


def test_compare_explains_one_class_with_both_methods(served, sample_paths):
    result = handlers.compare(served, str(sample_paths[2]), opacity=0.4)
    assert result.gradcam.explanation.target == result.scorecam.explanation.target
    assert result.gradcam.details["method"] == "gradcam" and result.scorecam.details["method"] == "scorecam"
    assert "| Grad-CAM |" in result.table and "| Score-CAM |" in result.table and "Deletion ↓" in result.table
    assert set(result.agreement) == {"rank_correlation", "top_overlap"} and 0 <= result.agreement["top_overlap"] <= 1
    assert f"rank correlation **{result.agreement['rank_correlation']:.2f}**" in result.table
    # Baselines do not depend on the method: both maps are measured against the same ones.
    g, sc = result.gradcam.details["faithfulness"], result.scorecam.details["faithfulness"]
    assert g["baselines"] == sc["baselines"]
    for r in (result.gradcam, result.scorecam):
        colours = np.unique(np.asarray(r.curves).reshape(-1, 3), axis=0)
        assert r.curves.size == (320, 200) and len(colours) > 3                    # a drawn plot, not blank


def test_a_rather_than_b_in_the_dropdown_and_the_handlers(served, sample_paths):
    assert handlers.target_choices(LABELS)[:4] == ["ring", "cross", "checker", "ring vs cross"]
    assert len(handlers.target_choices(LABELS)) == 3 + 6
    result = handlers.compare(served, str(sample_paths[0]), "checker vs ring")
    for r in (result.gradcam, result.scorecam):
        assert (r.details["label"], r.details["rival"]) == ("checker", "ring")
    assert "class **checker** rather than **ring**" in result.table
    with pytest.raises(handlers.UserError, match="needs two different classes"):
        handlers.explain(served, str(sample_paths[0]), "gradcam", "ring vs ring")
    with pytest.raises(handlers.UserError, match="Unknown class 'tumour'"):
        handlers.explain(served, str(sample_paths[0]), "gradcam", "ring vs tumour")


def test_user_mistakes_are_plain_errors(served, sample_paths):
    path = str(sample_paths[0])
    with pytest.raises(handlers.UserError, match="Unknown class 'tumour'; the model's classes are: ring"):
        handlers.explain(served, path, "gradcam", target="tumour")
    with pytest.raises(handlers.UserError, match="Opacity must be between 0 and 1"):
        handlers.explain(served, path, "gradcam", opacity=3)
    with pytest.raises(handlers.UserError, match="No image"):
        handlers.classify(served, None)
    missing = serving.Served("org/x", "v1", error="org/x: repository not found on the Hub")
    with pytest.raises(handlers.UserError, match="The model is not available: org/x: repository not found"):
        handlers.compare(missing, path)


def test_bad_uploads_get_their_own_message(served, bad_files):
    for name, (path, message) in bad_files.items():
        with pytest.raises(handlers.UserError) as info:
            handlers.classify(served, str(path))
        text = str(info.value)
        assert message in text and f"'{name}'" in text, text
        assert str(path.parent) not in text  # the server's temporary path is not shown


def test_greyscale_rgba_16bit_and_exif_rotated_just_work(served, odd_files):
    for name, (path, (height, width)) in odd_files.items():
        assert sum(handlers.classify(served, str(path)).values()) == pytest.approx(1.0, abs=1e-4), name
        result = handlers.explain(served, str(path), "gradcam")
        assert result.explanation.heatmap.shape == (height, width), name  # EXIF orientation applied


def test_huge_images_are_shrunk_for_display(served, tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (5000, 1000), (90, 90, 90)).save(path)
    assert handlers.read_image(str(path)).size == (handlers.DISPLAY_MAX_SIDE, 410)


def test_labels_are_escaped_in_markdown_and_html(tmp_path):
    labels = ['<img src=x onerror="alert(1)">', "a*b_[c](d)", "plain"]
    folder = random_model_folder(tmp_path / "html-labels", size=32, labels=labels)
    served = serving.load(str(folder), max_channels=SCORECAM_K)
    assert served.labels == labels  # labels come from config.json, verbatim
    header = app.card_links(served)
    assert "<img" not in header and "&lt;img" in header and r"a\*b\_\[c\]\(d\)" in header
    assert "<img" not in handlers.md_escape(labels[0])
    banner = app.error_banner(serving.Served("x/y", None, error="<script>alert(1)</script>"))
    assert "<script>" not in banner and "&lt;script&gt;" in banner


def test_memory_flat_and_hooks_released_over_a_hundred_requests(tmp_path, sample_paths):
    # resnet18 at 64 px (its layer4 is 2x2; at 32 px a 1x1 map is refused): the same code paths as ResNet50
    # (timm feature split) at a fraction of the cost
    folder = random_model_folder(tmp_path / "m64", size=64, arch="resnet18")
    served = serving.load(str(folder), max_channels=2)
    # Curves of 2 steps: the same faithfulness code on every request at a quarter of its forward passes.
    clf = served.classifier
    clf.explain = functools.partial(type(clf).explain, clf, steps=2)
    path = str(sample_paths[0])

    def rss_mb() -> float:
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def burst(n):
        for i in range(n):
            handlers.explain(served, path, "gradcam" if i % 2 else "scorecam", LABELS[i % 3])

    burst(30)  # warm up allocator caches
    before = rss_mb()
    burst(120)
    grown = rss_mb() - before
    assert grown < 40, f"resident memory grew {grown:.0f} MiB over 120 requests"
    for module in served.classifier.model.modules():  # no hook is left behind on the shared model
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks


# ---- the app, launched in-process and called like a user's script ---------------------------------------------

def test_named_endpoints_answer_like_the_handlers(running_app, served, sample_paths):
    client = Client(running_app.url, verbose=False)
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == set(ENDPOINTS)
    image = handle_file(str(sample_paths[3]))
    top = client.predict(image, api_name="/classify")
    expected = handlers.classify(served, str(sample_paths[3]))
    assert top["label"] == next(iter(expected))
    assert {c["label"]: c["confidence"] for c in top["confidences"]} == pytest.approx(expected)
    for method in ("gradcam", "scorecam"):
        (heat, over), png, summary, details, no_curves = client.predict(image, "cross", 0.5, api_name=f"/{method}")
        assert details["label"] == "cross" and details["method"] == method and details["seconds"] > 0
        assert Image.open(png).format == "PNG" and Image.open(png).size == Image.open(over).size == (96, 96)
        assert Image.open(heat).size == (96, 96) and handlers.METHOD_NAMES[method] in summary
        assert details["faithfulness"] is None and no_curves is None and "not measured yet" in summary  # map first
        assert details["localisation"] is None and "pointing game" not in summary  # an upload without a box
        summary, measured, curves = client.predict(api_name=f"/{method}_faithfulness")  # ...then its figures
        one_step = handlers.explain(served, str(sample_paths[3]), method, "cross")
        for key in ("deletion", "insertion", "keep_remove"):
            assert measured["faithfulness"][key] == pytest.approx(one_step.details["faithfulness"][key], abs=1e-5)
        assert measured["faithfulness"]["curves"]["deletion"] == pytest.approx(
            one_step.details["faithfulness"]["curves"]["deletion"], abs=1e-5)
        assert "deletion **" in summary and Image.open(curves).size == (320, 200)
    grad_png, score_png, grad_curves, _, table, both = client.predict(image, "ring vs cross", 0.5, api_name="/compare")
    assert both["gradcam"]["target"] == both["scorecam"]["target"] and "Deletion" in table
    assert both["scorecam"]["mode"] == "fast" and Image.open(score_png).size == (96, 96)
    assert both["gradcam"]["rival"] == "cross" and set(both["agreement"]) == {"rank_correlation", "top_overlap"}
    assert Image.open(grad_curves).size == (320, 200)
    assert 0.0 <= both["gradcam"]["faithfulness"]["insertion"] <= 1.0
    assert both["gradcam"]["localisation"] is None and "expert" not in table


def box_edges(box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of a box's drawn outline (its edge pixels and the 2 px around them) and of the pixels 4 px or more
    away from it, on a size x size picture."""
    x0, y0, x1, y1 = (round(v * size) for v in box)
    inner = np.zeros((size, size), bool)
    inner[y0:y1, x0:x1] = True
    edge = inner.copy()
    edge[y0 + 1:y1 - 1, x0 + 1:x1 - 1] = False
    from scipy.ndimage import binary_dilation

    return edge, ~binary_dilation(edge, iterations=4)


def test_an_example_with_a_box_gets_it_drawn_and_scored_in_every_tab(running_app, served, boxed_example):
    """The example published with its YOLO box file, sent as any client sends it (Gradio sees a copy in its cache,
    found by its bytes): the box on the pictures, pointing game and energy in the text and numbers."""
    path, box = boxed_example
    client = Client(running_app.url, verbose=False)
    image = handle_file(str(path))
    plain = handlers.explain(served, str(path), "gradcam", figures=False)  # the same map without the box
    edge, far = box_edges(box, 96)
    (heat, over), _, summary, details, _ = client.predict(image, "", 0.5, api_name="/gradcam")
    loc = details["localisation"]
    assert loc["region"] == "box" and isinstance(loc["hit"], bool) and 0.0 <= loc["energy"] <= 1.0
    assert loc["area"] == pytest.approx((box[2] - box[0]) * (box[3] - box[1]))
    assert f"pointing game: {'hit' if loc['hit'] else 'miss'}, energy in box: {loc['energy']:.2f} (" in summary
    assert f"({loc['ratio']:.1f}x its area share)" in summary
    for got, ref in ((over, plain.overlay), (heat, plain.heatmap)):
        got, ref = np.asarray(Image.open(got).convert("RGB"), np.int16), np.asarray(ref, np.int16)
        assert (got[edge] == 255).all()                          # the white line on the box's edge
        assert np.abs(got[far] - ref[far]).max() <= 1            # nothing else changed
    summary, measured, _ = client.predict(api_name="/gradcam_faithfulness")  # the figures keep the line
    assert measured["localisation"] == loc and "pointing game" in summary and "deletion **" in summary

    grad_png, score_png, _, _, table, both = client.predict(image, "", 0.5, api_name="/compare")
    assert "Against the expert box:" in table
    for name, png in (("gradcam", grad_png), ("scorecam", score_png)):
        loc = both[name]["localisation"]
        line = f"{handlers.METHOD_NAMES[name]}**: pointing game: {'hit' if loc['hit'] else 'miss'}, energy in box"
        assert line in table and f"{loc['energy']:.2f} ({loc['ratio']:.1f}x its area share)" in table
        assert (np.asarray(Image.open(png).convert("RGB"))[edge] == 255).all()


def test_bad_uploads_through_the_api(running_app, bad_files, odd_files):
    client = Client(running_app.url, verbose=False)
    for path, message in bad_files.values():
        with pytest.raises(REFUSED, match=message):
            client.predict(handle_file(str(path)), api_name="/classify")
    path, (height, width) = odd_files["rotated.jpg"]
    (heat, _), _, _, details, _ = client.predict(handle_file(str(path)), "", 0.5, api_name="/gradcam")
    assert details["image_size"] == [width, height] and Image.open(heat).size == (width, height)
    with pytest.raises(REFUSED, match="Unknown class 'tumour'; the model's classes are: ring"):
        client.predict(handle_file(str(path)), "tumour", 0.5, api_name="/scorecam")


def test_eight_concurrent_clients_get_the_sequential_results(running_app, served, sample_paths):
    jobs = [(str(sample_paths[i % len(sample_paths)]), ["", "ring", "cross", "checker"][i % 4],
             "gradcam" if i % 2 == 0 else "scorecam") for i in range(8)]
    expected = [handlers.explain(served, path, method, target, 0.5) for path, target, method in jobs]
    clients = [Client(running_app.url, verbose=False) for _ in jobs]
    start = threading.Barrier(len(jobs))

    def call(i):
        path, target, method = jobs[i]
        start.wait()
        runs = []
        for _ in range(2):  # the map, then its figures from this client's session: never another client's map
            heat_over, png, summary, details, _ = clients[i].predict(handle_file(path), target, 0.5,
                                                                     api_name=f"/{method}")
            _, measured, _ = clients[i].predict(api_name=f"/{method}_faithfulness")
            runs.append((heat_over, png, details, measured))
        return runs

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(call, range(len(jobs))))
    for runs, want in zip(results, expected):
        for (heat, over), png, details, measured in runs:
            assert (details["target"], details["mode"]) == (want.details["target"], want.details["mode"])
            assert (measured["target"], measured["method"]) == (want.details["target"], want.details["method"])
            for key in ("deletion", "insertion"):
                assert measured["faithfulness"][key] == pytest.approx(want.details["faithfulness"][key], abs=1e-5)
            assert details["probability"] == pytest.approx(want.details["probability"], abs=1e-5)
            for got, ref in ((heat, want.heatmap), (over, want.overlay), (png, want.overlay)):
                diff = np.abs(np.asarray(Image.open(got).convert("RGB"), np.int16) - np.asarray(ref, np.int16))
                assert diff.max() <= 1
    assert running_app.demo._queue.max_size == app.QUEUE_SIZE  # bounded queue


def test_concurrent_classify_requests_share_forward_passes_and_a_bad_upload_fails_alone(running_app, served,
                                                                                          sample_paths, bad_files):
    fn = next(f for f in running_app.demo.fns.values() if f.api_name == "classify")
    assert (fn.concurrency_id, fn.concurrency_limit) == ("classify", 2 * 8)  # batched wiring (the fixture's 8)
    bad, message = bad_files["notes.png"]
    paths = [bad if i == 5 else sample_paths[i % len(sample_paths)] for i in range(12)]
    clients = [Client(running_app.url, verbose=False) for _ in paths]
    start = threading.Barrier(len(paths))

    def call(i):
        start.wait()
        try:
            return clients[i].predict(handle_file(str(paths[i])), api_name="/classify")
        except REFUSED as exc:
            return exc

    with ThreadPoolExecutor(len(paths)) as pool:
        answers = list(pool.map(call, range(len(paths))))
    assert isinstance(answers[5], REFUSED) and message in str(answers[5])  # only the bad upload fails
    for path, top in zip(paths, answers):
        if path != bad:
            alone = handlers.classify(served, str(path))
            assert top["label"] == next(iter(alone))
            assert {c["label"]: c["confidence"] for c in top["confidences"]} == pytest.approx(alone, abs=1e-6)


class FakeSpaces:
    """`spaces` as on ZeroGPU (spaces 0.51, zero/wrappers.py): GPU(duration=f) asks for f(*args) seconds (recorded),
    then runs the function in a worker process: the arguments and the answer cross it pickled, and an exception
    other than a gr.Error comes back as gr.Error(<its class name>, title="ZeroGPU worker error")."""

    def __init__(self):
        self.calls: list[int] = []

    def GPU(self, duration):  # noqa: N802 - the name ZeroGPU's package uses
        import pickle

        import gradio as gr

        def decorate(fn):
            def on_gpu(*args):
                self.calls.append(duration(*args))
                try:
                    answer = fn(*pickle.loads(pickle.dumps(args)))
                except gr.Error:
                    raise
                except Exception as exc:  # noqa: BLE001 - what the worker does with any other exception
                    raise gr.Error(type(exc).__name__, title="ZeroGPU worker error", print_exception=False) from None
                return pickle.loads(pickle.dumps(answer))
            return on_gpu
        return decorate


def test_zerogpu_asks_for_each_calls_work_and_never_for_a_bad_request(served, sample_paths, bad_files, monkeypatch):
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    running = launch(served)
    try:
        client = Client(running.url, verbose=False)
        image = handle_file(str(sample_paths[0]))
        with pytest.raises(REFUSED, match="No image"):
            client.predict(None, "", 0.5, api_name="/scorecam")
        with pytest.raises(REFUSED, match="not an image file"):
            client.predict(handle_file(str(bad_files["notes.png"][0])), "", 0.5, api_name="/compare")
        with pytest.raises(REFUSED, match="No image"):
            client.predict(None, api_name="/classify")
        with pytest.raises(REFUSED, match="run Grad-CAM or Score-CAM on an image first"):
            client.predict(api_name="/gradcam_faithfulness")
        assert fake.calls == []  # checked on the CPU: no GPU asked for
        for endpoint in ("/gradcam", "/scorecam", "/compare"):
            client.predict(image, "", 0.5, api_name=endpoint)
        client.predict(api_name="/scorecam_faithfulness")
        client.predict(image, api_name="/classify")
    finally:
        running.demo.close()
    grad, score, both, figures, classify = fake.calls
    assert classify <= grad <= score <= both <= serving.GPU_MAX_SECONDS and figures <= both
    assert classify == math.ceil(serving.GPU_START_SECONDS + serving.GPU_PASS_SECONDS * 64 * 64 / 224 / 224)


def test_a_refusal_inside_a_zerogpu_call_reaches_the_user_as_its_message(served, sample_paths, monkeypatch):
    """A UserError raised in the model work (here a ValueError of the explainer, as for an input too small for the
    last stage) crosses ZeroGPU's worker as an answer, so the user reads its message, not "UserError"."""
    fake = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", fake)

    def too_small(*args, **kwargs):
        raise ValueError("the input is too small for layer4: use at least 32 px")

    monkeypatch.setattr(served.classifier, "explain", too_small)
    running = launch(served)
    try:
        client = Client(running.url, verbose=False)
        with pytest.raises(REFUSED, match="too small for layer4: use at least 32 px"):
            client.predict(handle_file(str(sample_paths[0])), "", 0.5, api_name="/gradcam")
        assert len(fake.calls) == 1  # it did reach the GPU call
        assert client.predict(handle_file(str(sample_paths[0])), api_name="/classify")["label"] in LABELS
    finally:
        running.demo.close()


def test_gpu_seconds_grow_with_the_work_and_fit_an_anonymous_quota_many_times():
    from types import SimpleNamespace

    def served(k, side=224):
        model = SimpleNamespace(num_features=2048)
        return SimpleNamespace(max_channels=k, classifier=SimpleNamespace(model=model,
                                                                          data_config={"input_size": (3, side, side)}))

    exact, fast = served("exact"), served(32)
    small, large = (512, 512), (2048, 2048)  # the largest image the app explains (handlers.DISPLAY_MAX_SIDE)
    assert serving.FAITHFULNESS_PASSES == 2 + 2 * 9 * 3 + 2 * 3  # 10 steps: 2 curves of 3 maps, keep-remove
    assert serving.forward_passes(exact, "scorecam") == 1 + 2048 and serving.forward_passes(fast, "scorecam") == 33
    assert serving.forward_passes(exact, "faithfulness") == 62 and serving.forward_passes(exact, "gradcam") == 1
    assert serving.gpu_seconds(exact, "faithfulness", large) == serving.gpu_seconds(exact, "faithfulness", small)
    assert serving.gpu_seconds(exact, "scorecam", small) > serving.gpu_seconds(fast, "scorecam", small)
    assert serving.gpu_seconds(exact, "scorecam", large) > serving.gpu_seconds(exact, "scorecam", small)
    assert serving.gpu_seconds(served("exact", 448), "scorecam", small) > serving.gpu_seconds(exact, "scorecam", small)
    assert serving.gpu_seconds(exact, "classify", (0, 0), 8) >= serving.gpu_seconds(exact, "classify", (0, 0), 1)
    costliest = serving.gpu_seconds(exact, "compare", large)
    assert costliest == 14  # 5 s start + 2,174 passes x 2 ms + 2 x 2.1 s drawing, rounded up
    assert 120 // costliest >= 8  # an anonymous visitor's 2 daily minutes cover 8 of the costliest calls
    assert serving.gpu_seconds(served("exact", 4096), "compare", large) == serving.GPU_MAX_SECONDS  # capped


# ---- model from the Hub: pinned revision, load failures, offline cache ------------------------------------------

def test_serves_a_pinned_revision_from_the_hub(hub_server, hub_token, repo_id, tiny_models, tiny_data, tmp_path):
    folder = tmp_path / "v1"  # v1 with a sample image, which the Examples tab takes from the repo
    shutil.copytree(tiny_models[0], folder, ignore=shutil.ignore_patterns("checkpoints"))
    (folder / "examples").mkdir()
    cross = next((tiny_data / "cross").glob("*.png"))
    shutil.copy(cross, folder / "examples" / "cross_case.png")
    shutil.copy(cross.with_suffix(".txt"), folder / "examples" / "cross_case.txt")  # its box travels with it
    first = push(folder, repo_id, tag="v1")
    push(tiny_models[1], repo_id, tag="v2")  # main moves on; the app must still serve v1
    served = serving.load(repo_id, "v1", max_channels=SCORECAM_K)
    assert served.ready, served.error
    assert (served.source, served.revision, served.commit) == (repo_id, "v1", first.commit)
    header = app.card_links(served)
    assert repo_id in header and first.commit[:12] in header and f"{hub_server.url}/{repo_id}" in header
    examples = sample_images.collect(served)
    assert [caption for _, caption in examples] == ["cross_case"]  # from the served revision, nothing else
    region = sample_images.ExpertRegions(examples).of(examples[0][0])  # the box was published and downloaded
    assert region is not None and len(region.boxes) == 1
    # Gradio serves only allowed folders: the example's snapshot folder and the blob it links to.
    allowed = sample_images.allowed_paths(examples)
    assert str(Path(examples[0][0]).resolve().parent) in allowed
    image = next((tiny_data / "ring").glob("*.png"))
    running = launch(served)
    try:
        top = Client(running.url, verbose=False).predict(handle_file(str(image)), api_name="/classify")
    finally:
        running.demo.close()
    local = from_pretrained(tiny_models[0], device="cpu").predict(image)
    assert {c["label"]: c["confidence"] for c in top["confidences"]} == pytest.approx(local, abs=1e-6)


def test_model_load_failures_still_start_the_app_and_say_why(hub_server, hub_token, repo_id, tiny_models,
                                                             tmp_path, sample_paths):
    push(tiny_models[0], repo_id, tag="v1")
    assert "repository not found" in serving.load("testorg/no-such-model").error
    assert "revision 'v7' not found" in serving.load(repo_id, "v7").error
    bad = tmp_path / "mismatched"
    shutil.copytree(tiny_models[0], bad, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "num_classes": 5}))
    assert "num_classes=5" in serving.load(str(bad)).error
    assert "no model given" in serving.load("").error
    assert serving.load(f"{repo_id}@v1").revision == "v1"
    latest = serving.load(repo_id)
    assert latest.revision == "main" and sample_images.collect(latest) == []  # no examples/ in this repo
    failed = serving.load(repo_id, "v7")
    running = launch(failed)
    try:
        client = Client(running.url, verbose=False)
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == set(ENDPOINTS)
        for endpoint, args in (("/classify", ()), ("/gradcam", ("", 0.5)), ("/compare", ("", 0.5))):
            with pytest.raises(REFUSED, match="The model is not available: .*revision 'v7' not found"):
                client.predict(handle_file(str(sample_paths[0])), *args, api_name=endpoint)
        values = [c.get("props", {}) for c in running.demo.config["components"]]
        banner = [p for p in values if isinstance(p.get("value"), str) and 'id="model-error"' in p["value"]]
        assert len(banner) == 1 and banner[0]["visible"] is not False
        assert "revision &#x27;v7&#x27; not found" in banner[0]["value"]
    finally:
        running.demo.close()


def test_falls_back_to_the_cached_revision_when_the_hub_is_down(hub_server, hub_token, repo_id, tiny_models):
    """Connection refused and a connection dropped mid-answer both fall back to the cached snapshot."""
    first = push(tiny_models[0], repo_id, tag="v1")
    push(tiny_models[1], repo_id, tag="v2")
    assert serving.load(repo_id, "v1").commit == first.commit  # online: downloads v1 into the cache
    hub_server.stop()
    try:
        cached = serving.load(repo_id, "v1")
        assert cached.ready, cached.error
        assert cached.commit == first.commit
        never = serving.load(repo_id, "v2")  # never downloaded: nothing to fall back to
        assert not never.ready and "cannot be reached" in never.error
    finally:
        hub_server.start()
    stopped = hub_server.kill_on("GET", rf"^/api/models/{repo_id}/revision/v1")  # dies while answering
    try:
        dropped = serving.load(repo_id, "v1")
        assert dropped.ready, dropped.error
        assert dropped.commit == first.commit and stopped.wait(10)
    finally:
        hub_server.clear_faults()
        hub_server.start()


# ---- the command line -------------------------------------------------------------------------------------------

def test_model_and_revision_come_from_the_environment_or_flags(monkeypatch):
    monkeypatch.setenv("MODEL_ID", "org/from-env")
    monkeypatch.setenv("MODEL_REVISION", "v3")
    from space.__main__ import serve_parser

    args = serve_parser().parse_args([])
    assert (args.model, args.revision, args.share, args.max_channels) == ("org/from-env", "v3", False, "auto")
    args = serve_parser().parse_args(["--model", "org/flag", "--revision", "v4", "--port", "7000", "--share"])
    assert (args.model, args.revision, args.port, args.share) == ("org/flag", "v4", 7000, True)
    monkeypatch.delenv("MODEL_REVISION")
    assert serve_parser().parse_args([]).revision is None  # main, unless --model says org/name@rev
    assert serve_parser().parse_args(["--max-channels", "exact"]).max_channels == "exact"
    assert serve_parser().parse_args(["--max-channels", "16"]).max_channels == 16
    monkeypatch.setenv("MAX_CHANNELS", "exact")
    assert serve_parser().parse_args([]).max_channels == "exact"
    for bad in (["--max-channels", "many"], ["--max-channels", "0"], ["--scorecam-channels", "0"]):
        with pytest.raises(SystemExit):
            serve_parser().parse_args(bad)


def test_python_m_space_serves_a_model_folder(random_model, tmp_path):
    """`python -m space --model DIR` from the repository root: the help, then a real start answering HTTP 200."""
    import urllib.request

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "space", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    for flag in ("--model", "--revision", "--port", "--host", "--share", "--max-channels", "--max-batch-size"):
        assert flag in done.stdout
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "space", "--model", str(random_model), "--port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, status = time.time() + 180, None
        while time.time() < deadline and status is None and proc.poll() is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).status
            except OSError:
                time.sleep(1)
        assert status == 200, (tmp_path / "app.log").read_text()[-2000:]
        assert f"serving {random_model}" in (tmp_path / "app.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_memory_tuning_takes_effect_on_glibc():
    """The app caps malloc arenas and trims the heap after model calls (see space/memory.py)."""
    import platform

    from space import memory

    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert memory.limit_arenas() is on_glibc
    trim = memory.Trimmer(every=3600)
    assert trim() is on_glibc and trim() is False  # at most once per interval, however often asked
