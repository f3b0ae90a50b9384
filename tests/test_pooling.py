"""--global-pool: the head's pooling travels in config.json, and Grad-CAM stays the cells' logits under it."""
from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.data import resolve_model_data_config

from hub import from_pretrained
from hub.explain.cam import GradCAM, normalise
from hub.model import GLOBAL_POOLS, save_model_folder
from train.grounding import cell_logits


def _model(pool: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3, output_stride=16, global_pool=pool).eval()


@pytest.mark.parametrize("pool", GLOBAL_POOLS)
def test_grad_cam_is_the_cells_logits_under_every_pooling(pool):
    # The gradient of a pooled logit sums to the head's weight over the cells for the mean and for the max
    # alike, so Grad-CAM (the spatial mean of that gradient) is the cell logits less the bias, whatever the pool.
    model = _model(pool)
    x = torch.randn(1, 3, 64, 64)
    got = GradCAM(model)(x, target=1).cam
    with torch.no_grad():
        cells = cell_logits(model.forward_features(x), model.get_classifier())[0, 1]
    want = normalise(torch.relu(cells - model.get_classifier().bias[1]))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_max_pooling_does_not_average_the_cells():
    # The reason for the option: with max pooling a logit is not the cells' mean (what dilutes a small lesion).
    model = _model("max")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        mean = cell_logits(features, model.get_classifier()).mean(dim=(2, 3))
        assert (model.forward_head(features) - mean).abs().max() > 1e-2


@pytest.mark.parametrize("pool", ["max", "avgmax"])
def test_the_pooling_travels_in_config_json(pool, tmp_path):
    # Set after construction (as a retrain's head reset would), so only the module knows it, not timm's record
    # of the factory's arguments: the folder must still carry it.
    model = _model("avg")
    model.reset_classifier(3, global_pool=pool)
    model.eval()
    out = save_model_folder(model, ["a", "b", "c"], tmp_path / "m", resolve_model_data_config(model))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_args"]["global_pool"] == pool and cfg["model_args"]["output_stride"] == 16
    x = torch.randn(2, 3, 64, 64)
    reloaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    ours = from_pretrained(out)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(reloaded(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.model(x), want, rtol=1e-5, atol=1e-5)
    assert reloaded.global_pool.pool_type == pool

