"""The explanation engine: shapes, edge cases, agreement with pytorch-grad-cam, hooks, threads,
fast mode, and a pointing game on a model trained on the synthetic evidence-box dataset."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from bench.explain import pearson, to_input  # the bench's comparison with the library, not a copy
from hub.explain.batch import mean_faithfulness
from hub.explain.cam import FAST_CHANNELS, FastScoreCAM, GradCAM, ScoreCAM
from hub.explain.explanation import cells_are_patches, explain, model_transform, to_pixels
from hub.explain.faithfulness import keep_remove_score
from hub.images import load_image
from train.synthetic import load_evidence, make_dataset

LABELS = ["ring", "cross", "checker"]
LAST_BLOCK = "layer4.0"  # test_resnet's layer4 has one block: same output as layer4, reached by a hook


def small_model(name: str = "test_resnet", size: int = 96, logit_scale: float = 10.0) -> torch.nn.Module:
    """A random-init timm model with the project's pretrained_cfg (labels, squash preprocessing)."""
    torch.manual_seed(0)
    kwargs = {"zero_init_last": False} if "resnet" in name else {}
    model = timm.create_model(name, pretrained=False, num_classes=len(LABELS), **kwargs)
    with torch.no_grad():
        # Random init gives classes that all look alike. Let each class read its own third of the
        # channels with positive, scaled weights: every class then has its own, non-empty evidence.
        fc = model.get_classifier()
        owner = torch.arange(fc.in_features)[None] % len(LABELS) == torch.arange(len(LABELS))[:, None]
        fc.weight.copy_(fc.weight.abs() * owner * logit_scale)
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": LABELS, "input_size": (3, size, size),
                            "crop_pct": 1.0, "crop_mode": "squash", "interpolation": "bilinear"}
    return model.eval()


def hook_count(model: torch.nn.Module) -> int:
    """Forward and backward hooks registered on any submodule."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def library_scorecam(model, image):
    """pytorch-grad-cam's ScoreCAM map and our exact map for the same input (computed once)."""
    from pytorch_grad_cam import ScoreCAM as LibraryScoreCAM

    x = model_transform(model)(image)[None]
    with LibraryScoreCAM(model, [model.layer4]) as cam:
        reference = cam(x, None)[0]
    return x, reference, ScoreCAM(model, dtype="float32", fill="constant")(x)   # the library's x * mask


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
@pytest.mark.parametrize("size", [(90, 50), (41, 77)])
def test_heatmap_has_input_size_and_range(model, method, size):
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    e = explain(model, img, method=method, max_channels=8)
    assert e.heatmap.shape == (size[1], size[0]) and e.heatmap.dtype == np.float32
    assert e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0 and e.heatmap.max() == pytest.approx(1.0)
    assert e.overlay(0.3).size == size and e.overlay().mode == "RGB"
    assert e.label == LABELS[e.target] and 0.0 <= e.probability <= 1.0
    f = e.faithfulness
    assert 0.0 <= f["deletion"] <= 1.0 and 0.0 <= f["insertion"] <= 1.0 and -1.0 <= f["keep_remove"] <= 1.0
    assert e.seconds > 0.0 and e.layer == "layer4"
    assert (e.mode, e.passes) == (("fast", 8) if method == "scorecam" else ("gradient", 0))


def test_resnet50_and_labels_by_name():
    model = small_model("resnet50", size=64)
    e = explain(model, np.zeros((30, 20, 3), np.uint8) + 90, method="gradcam", target="checker")
    assert e.target == 2 and e.label == "checker" and e.heatmap.shape == (30, 20)
    with pytest.raises(ValueError, match="unknown target label"):
        explain(model, np.zeros((8, 8), np.uint8), method="gradcam", target="tumour")
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, np.zeros((8, 8), np.uint8), method="lime")


@pytest.mark.parametrize("max_channels", ["exact", 16])
def test_constant_image_gives_no_nan(model, max_channels):
    for method in ("gradcam", "scorecam"):
        e = explain(model, Image.new("RGB", (64, 48), (128, 128, 128)), method=method, max_channels=max_channels)
        assert np.isfinite(e.heatmap).all() and e.heatmap.min() >= 0.0 and e.heatmap.max() <= 1.0
        assert np.isfinite(e.probability)
        assert np.isfinite([e.faithfulness[k] for k in ("deletion", "insertion", "keep_remove")]).all()


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_different_targets_give_different_maps(image, method):
    # Score-CAM softmaxes raw logits: on a random model they differ little between masked inputs,
    # so every target gets nearly the mean activation map. Larger logits make the weights matter.
    model = small_model(logit_scale=100.0)
    maps = [explain(model, image, method=method, target=t).heatmap for t in range(3)]
    assert all(np.abs(maps[i] - maps[j]).max() > 0.05 for i in range(3) for j in range(i + 1, 3))


def test_exact_scorecam_matches_library(library_scorecam):
    x, reference, ours = library_scorecam
    assert ours.mode == "exact" and ours.passes <= ours.channels
    assert pearson(to_input(ours.cam.numpy(), x.shape[-1]), reference) >= 0.99


@pytest.mark.parametrize("name", ["test_resnet", "resnet50"])
def test_gradcam_matches_library(name, image):
    from pytorch_grad_cam import GradCAM as LibraryGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = small_model(name)
    x = model_transform(model)(image)[None]
    for target in range(3):
        with LibraryGradCAM(model, [model.layer4]) as cam:
            reference = cam(x, [ClassifierOutputTarget(target)])[0]
        ours = GradCAM(model)(x, target)
        assert pearson(to_input(ours.cam.numpy(), x.shape[-1]), reference) >= 0.999
    assert hook_count(model) == 0


@pytest.mark.parametrize("name, layer", [("test_vit", "blocks.5"), ("test_efficientnet", "blocks.4"),
                                         ("test_convnext", "stages.3")])
def test_other_timm_architectures(name, layer, image):
    """Tokens (ViT), a last stage before a conv head (EfficientNet: hook path), NCHW (ConvNeXt)."""
    model = small_model(name, size=64)
    for method in ("gradcam", "scorecam"):
        e = explain(model, image.resize((50, 40)), method=method, max_channels=8)
        assert e.layer == layer and e.heatmap.shape == (40, 50) and np.isfinite(e.heatmap).all()
    assert hook_count(model) == 0


@pytest.mark.parametrize("layer", [None, LAST_BLOCK])
def test_gradcam_backward_stops_at_the_target_layer(model, image, layer):
    """The autograd graph of Grad-CAM's logits reaches the head's parameters and nothing before."""
    x = model_transform(model)(image)[None]
    _, logits, leaf = GradCAM(model, layer).split.run(x, grad=True)
    seen, stack, reached = set(), [logits.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf the backward would reach
            reached.add(id(node.variable))
        stack += [n for n, _ in node.next_functions]
    assert reached == {id(leaf), id(model.fc.weight), id(model.fc.bias)}
    assert hook_count(model) == 0


def test_hook_path_equals_hook_free_path(model, image):
    x = model_transform(model)(image)[None]
    hooked, plain = GradCAM(model, LAST_BLOCK)(x, 1), GradCAM(model)(x, 1)
    assert hooked.layer == LAST_BLOCK and torch.allclose(hooked.cam, plain.cam, atol=1e-5)
    assert hook_count(model) == 0


@pytest.mark.parametrize("method, fail_at", [("gradcam", 1), ("scorecam", 1), ("scorecam", 3)])
def test_hooks_released_after_exception(image, method, fail_at):
    """Fail inside the hooked forward (call 1) or in the masked passes (call 3)."""
    model = small_model()
    calls = []

    def fail_late(module, inputs, output):
        calls.append(1)
        if len(calls) == fail_at:
            raise RuntimeError("boom")

    before = hook_count(model)
    handle = model.fc.register_forward_hook(fail_late)
    with pytest.raises(RuntimeError, match="boom"):
        explain(model, image, method=method, max_channels=8, layer=LAST_BLOCK, batch_size=2)
    handle.remove()
    assert hook_count(model) == before
    # The model's lock was released too: a call from another thread finishes.
    with ThreadPoolExecutor(1) as pool:
        e = pool.submit(explain, model, image, method=method, max_channels=8, layer=LAST_BLOCK).result(timeout=60)
    assert e.layer == LAST_BLOCK and hook_count(model) == before


def test_concurrent_calls_equal_sequential(model):
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8)) for _ in range(3)]
    jobs = [(img, method, layer) for img in images for method in ("gradcam", "scorecam")
            for layer in (None, LAST_BLOCK)]

    def run(i):
        img, method, layer = jobs[i]
        return explain(model, img, method=method, max_channels=12, layer=layer, batch_size=4).heatmap

    sequential = [run(i) for i in range(len(jobs))]
    barrier = threading.Barrier(4)

    def run_together(i):
        if i < 4:  # make the first four really start at the same time
            barrier.wait(timeout=30)
        return run(i)

    with ThreadPoolExecutor(4) as pool:
        concurrent = list(pool.map(run_together, range(len(jobs))))
    for a, b in zip(sequential, concurrent):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert hook_count(model) == 0


def test_fast_scorecam_tracks_exact(model, library_scorecam):
    x, _, exact = library_scorecam
    fast = [FastScoreCAM(model, 32, seed=s, dtype="float32", fill="constant")(x) for s in range(3)]
    assert all(f.mode == "fast" and f.passes == 32 for f in fast)
    assert np.mean([pearson(f.cam.numpy(), exact.cam.numpy()) for f in fast]) >= 0.95
    everything = FastScoreCAM(model, 10_000, dtype="float32", fill="constant")(x)  # k above the channel count: exact
    assert everything.mode == "exact" and torch.allclose(everything.cam, exact.cam, atol=1e-5)


def test_faithfulness_score_and_folder_mean(model, tmp_path):
    x = model_transform(model)(Image.new("RGB", (96, 96), (30, 60, 90)))[None]
    assert keep_remove_score(model, x, torch.zeros(96, 96), 0) == 0.0
    score = keep_remove_score(model, x, torch.rand(96, 96), 0)
    assert -1.0 <= score <= 1.0
    make_dataset(tmp_path, classes=3, per_class=2, size=48, seed=0)
    result = mean_faithfulness(model, tmp_path, max_images=4, max_channels=8, steps=4)
    assert set(result) == {"gradcam", "scorecam"}
    for r in result.values():
        assert r["images"] == 4 and r["steps"] == 4 and -1.0 <= r["keep_remove"]["mean"] <= 1.0
        for curve in ("deletion", "insertion"):
            assert 0.0 <= r[curve]["low"] <= r[curve]["mean"] <= r[curve]["high"] <= 1.0
        assert set(r["beats"]) == {"random", "centre", "both"} and set(r["baselines"]) == {"random", "centre"}


@pytest.fixture(scope="module")
def trained(trained_synthetic):
    """The shared trained ResNet50, its held-out folder and evidence boxes."""
    model = timm.create_model(f"local-dir:{trained_synthetic.model_dir}", pretrained=True).eval()
    test_dir = trained_synthetic.data_dir / "test"
    return model, test_dir, sorted(load_evidence(test_dir).items())


def test_pointing_game_on_trained_model(trained):
    """The heatmap's maximum lies in the true evidence box on >= 90% of held-out images."""
    model, test_dir, boxes = trained
    # Grad-CAM on all 60 images; Score-CAM (k + 1 passes an image) on every other one, 10 of each class: the
    # test took 38 s of one worker with Score-CAM on all 60.
    images = {"gradcam": boxes, "scorecam": boxes[::2]}
    hits = dict.fromkeys(images, 0)
    for method, chosen in images.items():
        for rel, (x0, y0, x1, y1) in chosen:
            # Fast Score-CAM with half the default k: cheaper, and a stricter test of fast mode.
            e = explain(model, test_dir / rel, method=method, max_channels=FAST_CHANNELS // 2, faithfulness=False)
            row, col = np.unravel_index(np.argmax(e.heatmap), e.heatmap.shape)
            hits[method] += int(x0 <= col < x1 and y0 <= row < y1)
    rates = {m: h / len(images[m]) for m, h in hits.items()}
    assert all(rate >= 0.9 for rate in rates.values()), rates


def test_trained_model_targets_and_faithfulness(trained):
    """Grad-CAM's maps for the other classes differ from the predicted one's, and a map is more
    faithful than its own inverse. (Score-CAM is not class-discriminative here: any class's
    logit moves most when only the evidence is kept, so all its maps point at the evidence.)"""
    model, test_dir, boxes = trained
    patches, gaps = cells_are_patches(model), []
    for rel, _ in boxes[:: max(1, len(boxes) // 6)]:
        x = model_transform(model)(load_image(test_dir / rel))[None]
        res = GradCAM(model)(x)
        for other in set(range(len(res.logits))) - {res.target}:
            assert (GradCAM(model)(x, other).cam - res.cam).abs().max() > 0.2
        heat = to_pixels(res.cam, x.shape[-2:], x.shape[-2:], patches)
        gaps.append(keep_remove_score(model, x, heat, res.target) - keep_remove_score(model, x, 1.0 - heat, res.target))
    assert np.mean(gaps) > 0.2, gaps


def test_one_vocabulary_for_score_cams_k():
    from hub.explain.cam import parse_max_channels, resolve_max_channels

    assert [parse_max_channels(v) for v in ("auto", "exact", 12, "12")] == ["auto", "exact", 12, 12]
    assert resolve_max_channels("auto", "cpu") == FAST_CHANNELS and resolve_max_channels("auto", "cuda") == "exact"
    assert resolve_max_channels("exact", "cpu") == "exact" and resolve_max_channels(5, "cuda") == 5
    for bad, message in ((0, "at least 1"), ("many", "'auto', 'exact' or a whole number"), (True, "whole number"),
                         (None, "whole number")):  # None is no longer a spelling of "exact"
        with pytest.raises(ValueError, match=message):
            parse_max_channels(bad)
