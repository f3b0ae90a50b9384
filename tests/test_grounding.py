"""The grounding loss (train.grounding) and the joint transform that moves a region with its image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hub.annotations import Annotations, Region
from train.data import Split
from train.grounding import (
    ANNOTATED,
    HIDDEN,
    GroundedDataset,
    blur_fill,
    cell_logits,
    grounding_loss,
    joint_transform,
    no_class_loss,
)

CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bilinear"}


def _cells(peak: tuple[int, int], k: int = 3, size: int = 4, label: int = 0, outside_bias: float = 0.0) -> torch.Tensor:
    """1 x k x size x size cell logits: the true class peaks at `peak`; other cells lean to class 1 by outside_bias."""
    cells = torch.zeros(1, k, size, size)
    cells[0, 1] += outside_bias
    cells[0, :, peak[0], peak[1]] = 0.0
    cells[0, label, peak[0], peak[1]] = 5.0
    return cells


def _box_mask(size: int = 32, box=(0, 0, 8, 8)) -> torch.Tensor:
    m = torch.zeros(1, size, size)
    x0, y0, x1, y1 = box
    m[0, y0:y1, x0:x1] = 1
    return m


def test_loss_is_lower_when_the_true_class_peaks_inside_the_region():
    label, mask, annotated = torch.tensor([0]), _box_mask(), torch.tensor([1.0])
    inside = grounding_loss(_cells((0, 0)), label, mask, annotated)     # box covers cell (0, 0) of a 4x4 grid
    outside = grounding_loss(_cells((3, 3)), label, mask, annotated)
    assert inside < outside - 1.0


def test_class_evidence_outside_the_region_is_penalised():
    label, mask, annotated = torch.tensor([0]), _box_mask(), torch.tensor([1.0])
    neutral = grounding_loss(_cells((0, 0)), label, mask, annotated)
    leaning = grounding_loss(_cells((0, 0), outside_bias=3.0), label, mask, annotated)  # context says class 1
    assert leaning > neutral + 0.5


def test_images_without_annotation_add_nothing():
    cells = _cells((3, 3)).repeat(2, 1, 1, 1)
    loss = grounding_loss(cells, torch.tensor([0, 0]), _box_mask().repeat(2, 1, 1), torch.tensor([0.0, 0.0]))
    assert float(loss) == 0.0
    half = grounding_loss(cells, torch.tensor([0, 0]), _box_mask().repeat(2, 1, 1), torch.tensor([1.0, 0.0]))
    assert float(half) == pytest.approx(float(grounding_loss(cells[:1], torch.tensor([0]), _box_mask(),
                                                              torch.tensor([1.0]))))


def test_cell_logits_pool_to_the_model_logits():
    import timm

    model = timm.create_model("resnet18", num_classes=3, output_stride=16).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        cells = cell_logits(features, model.get_classifier())
        assert cells.shape == (2, 3, 4, 4)       # 64 px at stride 16
        torch.testing.assert_close(cells.mean(dim=(2, 3)), model.forward_head(features), rtol=1e-4, atol=1e-4)


def test_the_region_moves_with_the_image_through_crop_flip_and_rotation(tmp_path):
    # a bright square marks the region: after any random crop/flip/rotation it must still sit under the mask
    arr = np.full((96, 96, 3), 40, np.uint8)
    arr[10:40, 50:80] = 230
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    region = Region("a.txt", ((50 / 96, 10 / 96, 80 / 96, 40 / 96),))
    data = GroundedDataset(Split((path,), (0,)), Annotations({path: region}, (), "boxes"),
                           joint_transform(CONFIG, hflip=True, rotation=20, color_jitter=0.0, scale_min=0.5))
    for seed in range(8):
        torch.manual_seed(seed)
        x, label, mask, annotated = data[0]
        assert x.shape == (3, 32, 32) and mask.shape == (32, 32) and annotated == ANNOTATED and label == 0
        bright = x[0] > 1.0                       # (230/255 - 0.5) / 0.25 = 1.6; background -1.4
        if mask.sum() < 4:                        # the crop may cut the square away: then it is gone from both
            assert bright.sum() <= 6
            continue
        agree = (bright == (mask > 0.5)).float().mean()
        assert agree > 0.93, f"seed {seed}: the mask and the bright square agree on only {agree:.2f} of pixels"


def test_an_image_without_annotation_gets_an_empty_mask(tmp_path):
    path = tmp_path / "b.png"
    Image.new("RGB", (40, 40), (90, 90, 90)).save(path)
    data = GroundedDataset(Split((path,), (1,)), Annotations({}, (path,), "boxes"),
                           joint_transform(CONFIG, hflip=False, rotation=0, color_jitter=0.0, scale_min=1.0))
    _, _, mask, annotated = data[0]
    assert annotated == 0.0 and float(mask.sum()) == 0.0


def _whole_slice_paste(img, context, keep, feather):
    """The reference: paste_region's blend computed over the whole image (what it did before its window)."""
    from hub.explain.imputation import blur

    soft = blur(torch.from_numpy(keep).float()[None, None], max(1.0, feather))[0, 0].numpy()
    alpha = np.maximum(np.clip(2 * soft, 0, 1), keep)[..., None]
    out = alpha * np.asarray(img, np.float32) + (1 - alpha) * np.asarray(context, np.float32)
    return (out + 0.5).clip(0, 255).astype(np.uint8)


def _whole_grid_fill(img, hole):
    """The reference: blur_fill over the whole blur grid, upsampled over the whole image."""
    import math

    import torch.nn.functional as F

    from hub.explain.imputation import blur

    x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None]
    keep = torch.from_numpy(~hole).float()[None, None]
    factor = max(1, min(x.shape[-2:]) // 128)
    sigma = max(2.0, 0.5 * math.sqrt(float(hole.sum())) / factor)
    filled = blur(F.avg_pool2d(x * keep, factor), sigma) / blur(F.avg_pool2d(keep, factor), sigma).clamp_min(1e-4)
    filled = F.interpolate(filled, size=x.shape[-2:], mode="bilinear", align_corners=False)
    out = torch.where(keep > 0, x, filled.clamp(0, 1))
    return (out[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _random_region(rng, h, w):
    region = np.zeros((h, w), bool)
    y0, x0 = rng.integers(0, h), rng.integers(0, w)
    region[y0:y0 + rng.integers(1, max(2, h // 3)), x0:x0 + rng.integers(1, max(2, w // 3))] = True
    return region


def test_the_windowed_paste_and_fill_give_the_whole_image_pixels():
    """Both compute only near the region (17x and ~2x faster on a 512 px slice); the pixels must not change: regions at
    the borders and corners, sizes the blur grid does and does not tile, thin and large regions."""
    from train.grounding import paste_region

    rng = np.random.default_rng(0)
    differ, total = 0, 0
    for _ in range(60):
        h, w = (int(v) for v in rng.choice([40, 64, 200, 256, 300, 384, 512], 2))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        context = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        region = _random_region(rng, h, w)
        feather = float(rng.uniform(0.5, 12))
        for ours, reference in ((np.asarray(paste_region(img, context, region, feather)),
                                 _whole_slice_paste(img, context, region, feather)),
                                (np.asarray(blur_fill(img, region)), _whole_grid_fill(img, region))):
            gap = np.abs(ours.astype(int) - reference.astype(int))
            assert gap.max() <= 1                      # a float sum in another order may round one level apart
            differ, total = differ + int((gap > 0).sum()), total + gap.size
    assert differ <= total * 1e-5, f"{differ} of {total} values differ"


def test_no_class_loss_is_zero_only_for_a_uniform_answer():
    losses = no_class_loss(torch.tensor([[2.0, 2.0, 2.0], [4.0, 0.0, 0.0]]))
    assert float(losses[0]) == pytest.approx(0.0, abs=1e-6) and float(losses[1]) > 0.5


def test_blur_fill_hides_the_region_from_its_surroundings():
    arr = np.full((256, 256, 3), 60, np.uint8)
    arr[100:140, 100:140] = 240                       # the "lesion"
    hole = np.zeros((256, 256), bool)
    hole[96:144, 96:144] = True
    out = np.asarray(blur_fill(Image.fromarray(arr), hole)).astype(int)
    assert (out[~hole] == arr[~hole]).all()           # nothing outside the hole changes
    assert abs(out[hole].mean() - 60) < 6 and out[hole].max() < 90   # the lesion is gone, no bright trace


def test_a_counterfactual_sample_has_its_region_hidden_and_no_region_to_point_at(tmp_path):
    arr = np.full((96, 96, 3), 40, np.uint8)
    arr[30:60, 30:60] = 230
    path = tmp_path / "c.png"
    Image.fromarray(arr).save(path)
    region = Region("c.txt", ((30 / 96, 30 / 96, 60 / 96, 60 / 96),))
    data = GroundedDataset(Split((path,), (2,)), Annotations({path: region}, (), "boxes"),
                           joint_transform(CONFIG, hflip=False, rotation=0, color_jitter=0.0, scale_min=1.0),
                           counterfactual=0.999)
    torch.manual_seed(0)
    x, label, mask, kind = data[0]
    assert kind == HIDDEN and label == 2 and float(mask.sum()) == 0.0
    assert float(x[0].max()) < 0.0                    # no pixel near the square's brightness (1.6) is left


def _swap_pair(tmp_path):
    """Two annotated 96 px images: A (class 0) a bright square on dark; B (class 1) grey, its own lesion and a corner
    mark outside it (context only B has)."""
    a = np.full((96, 96, 3), 40, np.uint8)
    a[30:60, 30:60] = 230
    b = np.full((96, 96, 3), 120, np.uint8)
    b[60:90, 60:90] = 200
    b[0:12, 0:12] = 250
    paths = (tmp_path / "a.png", tmp_path / "b.png")
    for path, arr in zip(paths, (a, b)):
        Image.fromarray(arr).save(path)
    regions = {paths[0]: Region("a.txt", ((30 / 96, 30 / 96, 60 / 96, 60 / 96),)),
               paths[1]: Region("b.txt", ((60 / 96, 60 / 96, 90 / 96, 90 / 96),))}
    return Split(paths, (0, 1)), Annotations(regions, (), "boxes")


def test_a_context_swap_sample_keeps_its_lesion_and_label_in_another_images_context(tmp_path):
    split, annotations = _swap_pair(tmp_path)
    config = {**CONFIG, "input_size": (3, 96, 96)}
    data = GroundedDataset(split, annotations, joint_transform(config, hflip=False, rotation=0, color_jitter=0.0,
                                                               scale_min=1.0), context_swap=0.999)
    torch.manual_seed(0)
    x, label, mask, kind = data[0]
    pixels = (x[0] * 0.25 + 0.5) * 255                       # back to 0-255 (CONFIG's mean and std)
    assert label == 0 and kind == ANNOTATED                   # A's label and region, trained as annotated
    assert float(mask[30:60, 30:60].min()) == 1.0 and float(mask.sum()) == 900
    assert float((pixels[30:60, 30:60] - 230).abs().max()) < 2   # A's lesion, untouched
    assert float((pixels[0:12, 0:12] - 250).abs().max()) < 2     # B's context: its corner mark...
    assert float((pixels[20:26, 70:90] - 120).abs().max()) < 2   # ...and its grey, not A's dark background
    assert float(pixels[66:84, 66:84].max()) < 170               # B's own lesion blur-filled away (200 there)


def test_paste_region_has_no_hard_edge_and_keeps_the_region_exactly():
    from train.grounding import paste_region

    img = Image.fromarray(np.full((64, 64, 3), 200, np.uint8))
    context = Image.fromarray(np.full((64, 64, 3), 0, np.uint8))
    keep = np.zeros((64, 64), bool)
    keep[20:40, 20:40] = True
    out = np.asarray(paste_region(img, context, keep, feather=3.0))[..., 0].astype(int)
    assert (out[keep] == 200).all() and out[0, 0] == 0       # the region is img's, far away is the context's
    ramp = out[30, 40:52]                                      # leaving the region to the right
    assert (np.diff(ramp) <= 0).all() and 0 < ramp[3] < 200 and np.abs(np.diff(ramp)).max() < 120


def test_the_input_bench_times_each_training_input_path(capsys):
    from bench.train_throughput import main

    main(["--compare-inputs", "--rounds", "1", "--source-size", "96", "--img-size", "32"])
    rows = {line[:24].strip(): line.split()[-2:] for line in capsys.readouterr().out.splitlines()[2:]}
    assert list(rows) == ["plain (baseline)", "--annotations", "--context-swap 1", "--counterfactual 1"]
    assert rows["plain (baseline)"][1] == "1.00"
    # a swapped sample reads a second image and blends two: it cannot cost less than a plain one
    assert float(rows["--context-swap 1"][0]) > float(rows["plain (baseline)"][0]) > 0
