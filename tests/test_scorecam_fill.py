"""Score-CAM's fill: what its masks remove becomes. "constant" is pytorch-grad-cam's x * mask (the normalisation
mean colour); "blur" and "linear" fill from the image itself (hub.explain.imputation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_explain import small_model

from hub.card import localisation_tables
from hub.explain.cam import SCORECAM_FILL, FastScoreCAM, GradCAM, ScoreCAM
from hub.explain.explanation import explain, model_transform
from hub.explain.imputation import BLUR_SIGMA, IMPUTATIONS, blur
from hub.explain.lesion import LesionRow, MapInfo, summarise
from hub.explain.localisation import Localisation


@pytest.fixture(scope="module")
def model():
    return small_model()


def halves(width: int = 96, height: int = 96) -> Image.Image:
    """Noise over a bright left half and a dark right half: a blur of it is far from the mean colour (a blur of
    plain noise is not)."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 64, (height, width, 3)) + np.where(np.arange(width) < width // 2, 190, 0)[None, :, None]
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.fixture(scope="module")
def x(model):
    return model_transform(model)(halves())[None]


def masked_inputs(model, cam, x):
    """Every input the model's forward saw while `cam` explained `x`, and the result."""
    seen = []
    handle = model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        result = cam(x)
    finally:
        handle.remove()
    return result, torch.cat(seen)


def test_each_masked_input_lies_between_the_image_and_its_fill(model, x):
    """Every pixel of every masked input is the image, the fill, or a blend of the two: nothing else gets in."""
    backgrounds = {"constant": torch.zeros_like(x), "blur": blur(x, BLUR_SIGMA * max(x.shape[-2:]))}
    inputs = {}
    for fill, background in backgrounds.items():
        result, seen = masked_inputs(model, FastScoreCAM(model, 8, dtype="float32", fill=fill), x)
        assert result.fill == fill and seen.shape[0] == result.passes
        assert float(((seen - x) * (seen - background)).max()) <= 1e-5, fill
        inputs[fill] = seen
    # the two fills give the model different inputs wherever a mask removed something
    assert float((inputs["blur"] - inputs["constant"]).abs().max()) > 0.5


def test_blur_is_the_default_everywhere(model, x):
    """One default (measured in hub/explain/cam.py) for the classes, explain() and the sanity check's maps."""
    default, named = FastScoreCAM(model, 8, dtype="float32")(x), FastScoreCAM(model, 8, dtype="float32",
                                                                               fill="blur")(x)
    assert SCORECAM_FILL == "blur" and default.fill == "blur" and torch.equal(default.cam, named.cam)
    assert ScoreCAM(model).fill == "blur"
    assert explain(model, halves(), method="scorecam", max_channels=8, faithfulness=False).fill == "blur"


def test_the_fill_changes_the_map_and_travels_with_it(model):
    img = halves(64, 80)
    maps = {f: explain(model, img, method="scorecam", max_channels=8, faithfulness=False, scorecam_fill=f)
            for f in IMPUTATIONS}
    assert {f: e.fill for f, e in maps.items()} == {f: f for f in IMPUTATIONS}
    assert np.abs(maps["blur"].heatmap - maps["constant"].heatmap).max() > 0.05
    assert explain(model, img, method="gradcam", faithfulness=False).fill is None
    assert GradCAM(model)(model_transform(model)(img)[None]).fill is None


@pytest.mark.parametrize("make", [lambda m: ScoreCAM(m, fill="grey"), lambda m: FastScoreCAM(m, 4, fill="grey"),
                                  lambda m: explain(m, Image.new("RGB", (32, 32)), scorecam_fill="grey")])
def test_an_unknown_fill_is_refused_with_the_choices(model, make):
    choices = r"\['linear', 'blur', 'constant'\]"
    with pytest.raises(ValueError, match=rf"unknown Score-CAM fill 'grey'; choose from {choices}"):
        make(model)


def test_the_report_and_the_card_name_a_fill_other_than_the_library_one():
    def row(fill):
        maps = {"scorecam": Localisation(True, 0.5, 0.1, 5.0),
                **{b: Localisation(False, 0.1, 0.1, 1.0) for b in ("centre", "flat", "random")}}
        return LesionRow("a.png", 0, 0.1, maps, {v: 0 for v in ("as_is", "hidden", "only")},
                         {v: 0.9 for v in ("as_is", "hidden", "only")},
                         {"scorecam": MapInfo("fast", 8, "layer4", 0.1, fill)}, 0.2)

    for fill, label in (("blur", "Score-CAM (fast, k=8), blur fill"), ("constant", "Score-CAM (fast, k=8)")):
        report = summarise([row(fill), row(fill)], 0, 15.0)
        assert report["methods"]["scorecam"]["fill"] == fill
        names = [m["name"] for m in localisation_tables({"test": report})[0]["maps"]]
        assert label in names, names
