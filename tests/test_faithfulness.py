"""Faithfulness figures: deletion/insertion on a model whose evidence is known, imputation leaks, baselines,
agreement, contrastive targets and the sanity check (a map that ignores the model fails, Grad-CAM passes)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hub.explain import explain
from hub.explain.explanation import add_faithfulness, model_transform
from hub.explain.faithfulness import (
    agreement,
    centre_map,
    curves,
    measure,
    random_map,
    ranking,
    target_probability,
)
from hub.explain.imputation import impute
from hub.explain.sanity import cascade, sanity_check
from hub.explain.stats import bootstrap_interval, rank_correlation, ssim
from hub.images import load_image
from hub.model import resolve_contrast

SIZE = 64


class RegionModel(nn.Module):
    """Class 0's logit is the fine detail (energy around a 3x3 mean) of the top-left quarter, class 1's is 0:
    the output depends on that region only, and on its texture, which no imputation can restore."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        region = x[:, :, : h // 2, : w // 2]
        detail = region - F.avg_pool2d(region, 3, stride=1, padding=1, count_include_pad=False)
        energy = detail.pow(2).mean(dim=(1, 2, 3))
        return torch.stack([40.0 * (energy - 0.2), torch.zeros_like(energy)], dim=1)


def quarter(top_left: bool) -> torch.Tensor:
    """A map that is 1 on the top-left (the evidence) or the bottom-right quarter, 0 elsewhere."""
    heat = torch.zeros(SIZE, SIZE)
    half = slice(None, SIZE // 2) if top_left else slice(SIZE // 2, None)
    heat[half, half] = 1.0
    return heat


@pytest.fixture(scope="module")
def noise_image() -> torch.Tensor:
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("imputation", ["linear", "blur", "constant"])
def test_deletion_and_insertion_find_the_known_region(noise_image, imputation):
    """A map on the evidence: deletion area low, insertion high; a map elsewhere: the reverse."""
    model = RegionModel()
    assert target_probability(model(noise_image), 0) > 0.99
    scores = curves(model, noise_image, {"on": quarter(True), "off": quarter(False)}, 0, imputation=imputation)
    on, off = scores["on"], scores["off"]
    assert on["deletion"] < 0.3 < 0.8 < on["insertion"], on
    assert off["deletion"] > off["insertion"] + 0.2, off
    for s in (on, off):
        assert len(s["curves"]["deletion"]) == len(s["curves"]["insertion"]) == 11
        assert s["curves"]["deletion"][0] == s["curves"]["insertion"][-1]  # the whole image, both ends
        assert 0.0 <= s["deletion"] <= 1.0 and 0.0 <= s["insertion"] <= 1.0


def test_linear_imputation_hides_the_holes_shape():
    """Scattered holes in a flat region: constant fill draws edges the model reads as detail, the linear fill
    (and a blur of a flat image) does not. The measured figures are in hub/explain/faithfulness.py."""
    model, flat = RegionModel(), torch.ones(1, 3, SIZE, SIZE)
    keep = (torch.rand(8, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) > 0.2).float()
    with torch.inference_mode():
        before = float(target_probability(model(flat), 0)[0])
        after = {how: float(target_probability(model(impute(flat, keep, how)), 0).mean())
                 for how in ("constant", "blur", "linear")}
    assert after["linear"] - before < 0.002 and after["blur"] - before < 0.002, after
    assert after["constant"] - before > 0.05, after          # measured: 0.0003 -> 0.08
    filled = impute(flat, keep, "linear")
    assert torch.equal(filled * keep, flat * keep)            # kept pixels are untouched
    assert (filled - flat).abs().max() < 0.3                  # holes filled from their flat surroundings


def test_baselines_are_reproducible_and_differ_from_each_other():
    assert torch.equal(random_map((48, 40), seed=3), random_map((48, 40), seed=3))
    assert not torch.equal(random_map((48, 40), seed=3), random_map((48, 40), seed=4))
    centre = centre_map((48, 40))
    assert float(centre[24, 20]) == pytest.approx(float(centre.max()), abs=1e-2) and centre[0, 0] < 0.05
    for m in (random_map((48, 40)), centre):
        assert m.shape == (48, 40) and 0.0 <= float(m.min()) and float(m.max()) <= 1.0
    flat = ranking(torch.zeros(6, 6), seed=0)
    assert sorted(flat.flatten().tolist()) == list(range(36)) and not torch.equal(flat.flatten(), torch.arange(36))


def test_measure_reports_baselines_and_whether_the_map_beats_them(noise_image):
    model = RegionModel()
    good = measure(model, noise_image, quarter(True), 0, steps=5)
    again = measure(model, noise_image, quarter(True), 0, steps=5)
    assert good == again                                       # seeded: the same figures twice
    assert set(good["baselines"]) == {"random", "centre"} and good["steps"] == 5
    for scores in (good, *good["baselines"].values()):
        assert {"deletion", "insertion", "keep_remove"} <= set(scores) and len(scores["curves"]["deletion"]) == 6
    assert good["beats_baselines"] and good["beats"] == {"random": True, "centre": True}
    bad = measure(model, noise_image, quarter(False), 0, steps=5)
    assert not bad["beats_baselines"] and bad["baselines"] == good["baselines"]
    assert good["keep_remove"] > 0.5 > bad["keep_remove"]
    for steps in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="steps must be a whole number of at least 2"):
            measure(model, noise_image, quarter(True), 0, steps=steps)


def test_contrastive_probability_and_targets():
    logits = torch.tensor([[2.0, 1.0, -3.0]])
    assert float(target_probability(logits, 0, 1)) == pytest.approx(1 / (1 + np.exp(-1.0)))
    labels = ["glioma", "meningioma", "pituitary"]
    assert resolve_contrast(("glioma", "meningioma"), labels) == (0, 1)
    assert resolve_contrast("pituitary vs glioma", labels) == (2, 0) and resolve_contrast("glioma", labels) == (0, None)
    with pytest.raises(ValueError, match="two different classes, got 'glioma' twice"):
        resolve_contrast(("glioma", "glioma"), labels)
    with pytest.raises(ValueError, match="unknown target label 'tumour'"):
        resolve_contrast("glioma vs tumour", labels)


def test_stats_against_hand_computed_values():
    a, b = np.array([[1, 2], [3, 4]]), np.array([[10, 20], [40, 30]])
    assert rank_correlation(a, b) == pytest.approx(0.8)        # d = (0, 0, 1, 1): 1 - 6 * 2 / (4 * 15)
    assert rank_correlation([0, 0, 1, 2], [0, 0, 2, 1]) == pytest.approx(7 / 9)  # ties: ranks 0.5, 0.5, 2, 3
    assert rank_correlation(np.zeros(4), b) == 0.0
    img = np.random.default_rng(0).random((32, 32))
    assert ssim(img, img) == pytest.approx(1.0) and ssim(img, 1 - img) < 0.0
    low, high = bootstrap_interval([0.2, 0.4, 0.6, 0.8])
    assert 0.2 <= low < 0.5 < high <= 0.8 and bootstrap_interval([0.2, 0.4, 0.6, 0.8]) == (low, high)


def test_agreement_of_two_maps():
    heat = centre_map((SIZE, SIZE)).numpy()
    same = agreement(heat + 1e-4 * np.random.default_rng(0).random(heat.shape), heat)
    assert same["rank_correlation"] > 0.99 and same["top_overlap"] > 0.95
    other = agreement(heat, np.roll(heat, SIZE // 2, axis=(0, 1)))   # the peak moved to a corner
    assert other["top_overlap"] == 0.0 and other["rank_correlation"] < 0.0
    with pytest.raises(ValueError, match="different shapes"):
        agreement(heat, heat[:-1])


def small_resnet(size: int = 64) -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    model.pretrained_cfg = {**model.pretrained_cfg, "label_names": ["ring", "cross", "checker"],
                            "input_size": (3, size, size), "crop_pct": 1.0, "crop_mode": "squash"}
    return model.eval()


def test_explanation_carries_the_figures_and_explains_a_rather_than_b():
    model, img = small_resnet(), Image.new("RGB", (50, 40), (120, 60, 30))
    e = explain(model, img, method="gradcam", target=("cross", "ring"), steps=4)
    assert (e.label, e.rival_label, e.target, e.rival) == ("cross", "ring", 1, 0)
    f = e.faithfulness
    assert {"deletion", "insertion", "keep_remove", "baselines", "beats_baselines"} <= set(f)
    assert isinstance(f["beats_baselines"], bool) and f["steps"] == 4 and len(f["curves"]["insertion"]) == 5
    # The figures follow p(cross | cross or ring): its whole-image value is the curves' shared end.
    logits = torch.log(torch.as_tensor(e.probabilities))
    assert f["curves"]["deletion"][0] == pytest.approx(float(torch.sigmoid(logits[1] - logits[0])), abs=0.02)
    plain = explain(model, img, method="gradcam", target="cross", faithfulness=False)
    assert plain.faithfulness is None and plain.rival is None
    assert np.abs(plain.heatmap - e.heatmap).max() > 0.05      # "cross rather than ring" is another map


def test_figures_measured_later_equal_the_figures_of_one_call():
    """The app shows the map first and measures it next: two steps must give what one gives."""
    model, img = small_resnet(), Image.new("RGB", (50, 40), (120, 60, 30))
    img.paste((20, 200, 90), (5, 5, 25, 20))
    for method in ("gradcam", "scorecam"):
        whole = explain(model, img, method=method, target=("cross", "ring"), max_channels=4, steps=4)
        first = explain(model, img, method=method, target=("cross", "ring"), max_channels=4, steps=4,
                        faithfulness=False)
        assert first.faithfulness is None and first.model_map.shape == (64, 64)   # the model's input size
        later = add_faithfulness(model, first, steps=4)
        assert later.faithfulness == whole.faithfulness and np.array_equal(later.heatmap, whole.heatmap)
        assert later.seconds > first.seconds and first.faithfulness is None       # a new object; the first unchanged
    with pytest.raises(ValueError, match="no model-size map"):
        add_faithfulness(model, replace(first, model_map=None))


@pytest.mark.parametrize("call, message", [
    (lambda m, img: explain(m, img, target=("ring", "ring")), "got 'ring' twice"),
    (lambda m, img: explain(m, img, target="ring vs tumour"), "unknown target label 'tumour'"),
    (lambda m, img: explain(m, img, steps=1), "steps must be a whole number of at least 2"),
    (lambda m, img: explain(m, img, imputation="zeros"), "unknown imputation 'zeros'"),
    (lambda m, img: explain(small_resnet(32), img, method="gradcam"), "gives a 1x1 map"),
    (lambda m, img: explain(m, img, method="gradcam", layer="fc"), "not a spatial map"),
])
def test_bad_requests_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call(small_resnet(), Image.new("RGB", (40, 40)))
    assert "\n" not in str(info.value)


def test_sanity_check_flags_a_map_that_ignores_the_model_and_passes_gradcam(trained_synthetic):
    model = timm.create_model(f"local-dir:{trained_synthetic.model_dir}", pretrained=True).eval()
    assert cascade(model) == ["fc", "layer4", "layer3"]
    paths = sorted((trained_synthetic.data_dir / "test").rglob("*.png"))[::20]
    xs = [model_transform(model)(load_image(p))[None] for p in paths]
    labels = model.pretrained_cfg["label_names"]
    targets = [labels.index(p.parent.name) for p in paths]

    def intensity(model, x, target):  # the image's own brightness: the same map for any model
        v = x[0].mean(0)
        return (v - v.min()) / (v.max() - v.min())

    before = {k: v.clone() for k, v in model.state_dict().items()}
    blind = sanity_check(model, xs, intensity, targets)
    assert not blind["passed"] and all(s["rank_correlation"] > 0.99 and s["ssim"] > 0.99 for s in blind["steps"])
    grad = sanity_check(model, xs, "gradcam", targets)
    assert grad["passed"] and [s["randomised"] for s in grad["steps"]] == ["fc", "layer4", "layer3"], grad
    assert grad["steps"][-1]["rank_correlation"] < 0.5 and grad["steps"][-1]["ssim"] < 0.5
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the model is untouched
