"""Random gain and gamma in training (--intensity) and the intensity check (hub.explain.intensity, bench.intensity)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from hub.explain.intensity import CHANGES, Change, intensity_check, report_lines
from hub.images import gain_gamma
from train.__main__ import parser
from train.config import build_config
from train.data import train_transform
from train.grounding import joint_transform
from train.intensity import RandomIntensity

CONFIG = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bilinear"}


def test_gain_and_gamma_keep_black_black_and_stay_in_range():
    x = torch.linspace(0, 1, 11)
    assert gain_gamma(x, 1.0, 1.0).equal(x)
    bright = gain_gamma(x, 1.3, 0.7)
    assert bright[0] == 0 and bright.max() == 1 and (bright >= x).all()
    dark = gain_gamma(np.linspace(0, 1, 11), 0.8, 1.25)
    assert dark[0] == 0 and dark.max() == pytest.approx(0.8) and (dark <= np.linspace(0, 1, 11)).all()


def test_random_intensity_draws_one_gain_and_gamma_per_image_within_its_strength():
    torch.manual_seed(0)
    x = torch.full((3, 8, 8), 0.5)
    x[:, 0] = 0.0                                      # a black row: air around the head
    s = 0.25
    lo, hi = 0.5 ** np.exp(s) * np.exp(-s), 0.5 ** np.exp(-s) * np.exp(s)
    seen = []
    for _ in range(200):
        y = RandomIntensity(s)(x)
        assert (y[:, 0] == 0).all(), "black must stay black (ColorJitter's contrast would lift it)"
        assert y[:, 1:].unique().numel() == 1, "one draw for the whole image, its three channels alike"
        seen.append(float(y[0, 1, 0]))
    assert lo - 1e-6 <= min(seen) < 0.42 and 0.6 < max(seen) <= hi + 1e-6, (min(seen), max(seen), lo, hi)


def test_random_intensity_leaves_the_region_alone_and_refuses_unscaled_images():
    image, mask = tv_tensors.Image(torch.rand(3, 8, 8)), tv_tensors.Mask(torch.ones(8, 8, dtype=torch.uint8))
    out_image, out_mask = RandomIntensity(0.5)(image, mask)
    assert out_mask.equal(mask) and isinstance(out_image, tv_tensors.Image) and not out_image.equal(image)
    with pytest.raises(TypeError, match="place it after ToTensor"):
        RandomIntensity(0.2)(torch.zeros(3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        RandomIntensity(0.0)


@pytest.mark.parametrize("scale_min", [1.0, 0.6])
def test_the_step_sits_between_to_tensor_and_normalise_in_every_pipeline(scale_min):
    names = lambda tf: [type(t).__name__ for t in tf.transforms]  # noqa: E731
    for tf in (train_transform(CONFIG, True, 10.0, 0.0, scale_min, 0.25),
               joint_transform(CONFIG, True, 10.0, 0.0, scale_min, 0.25)):
        steps = names(tf)
        assert steps.index("RandomIntensity") == steps.index("Normalize") - 1, steps
    assert "RandomIntensity" not in names(train_transform(CONFIG, True, 10.0, 0.0, scale_min))
    # a black image stays at the normalised black after the step: (0 - 0.5) / 0.25
    out = train_transform(CONFIG, False, 0.0, 0.0, scale_min, 1.0)(Image.new("RGB", (40, 40)))
    assert torch.allclose(out, torch.full_like(out, -2.0))


def test_the_flag_reaches_the_config():
    args = vars(parser().parse_args(["--data", "d", "--recipe", "mri", "--intensity", "0.25"]))
    cfg = build_config(args.pop("recipe"), **args)
    assert cfg.intensity == 0.25 and build_config("mri", data="d").intensity == 0.0  # the card: test_card.py


def _images(n: int, seed: int = 0) -> tuple[list[Image.Image], list[int]]:
    """Grey images, each with one bright spot on its left (class 0) or right (class 1) half; the overall
    brightness varies at random and says nothing about the class."""
    rng = np.random.default_rng(seed)
    images, truths = [], []
    for i in range(n):
        label = i % 2
        a = np.full((32, 32), rng.uniform(60, 140))
        x = rng.integers(2, 12) + (16 if label else 0)
        a[12:18, x:x + 4] = 250
        images.append(Image.fromarray(a.astype(np.uint8)).convert("RGB"))
        truths.append(label)
    return images, truths


def by_place(batch):       # reads where the spot is: gain and gamma cannot move it
    return np.array([int(np.asarray(im)[..., 0].argmax() % 32 >= 16) for im in batch])


def by_brightness(batch):  # reads the mean grey: the shortcut
    return np.array([int(np.asarray(im).mean() > 100) for im in batch])


def test_a_model_that_reads_the_evidence_keeps_every_answer():
    images, truths = _images(40)
    report = intensity_check(by_place, images, truths, classes=2, batch=7)
    assert report.accuracy["mean"] == 1.0 and report.mean_flips == 0.0
    assert [c.name for c in report.changes] == [c.name for c in CHANGES]
    assert all(c.accuracy["mean"] == 1.0 and c.predicted == (20, 20) for c in report.changes)


def test_a_model_that_reads_brightness_changes_answers_toward_one_class():
    images, truths = _images(40)
    report = intensity_check(by_brightness, images, truths, classes=2)
    darker = report.changes[0]
    assert report.mean_flips > 0.1 and darker.flips["mean"] > 0.1, report
    assert darker.predicted[0] > report.predicted[0], "darkened images drift to the 'dark' class"
    lines = report_lines(report, ["left", "right"])
    assert lines[0] == "intensity check on 40 images (true class counts: 20 left, 20 right)"
    assert any(line.startswith("darker (gain 0.8)") for line in lines) and "mean share of answers changed" in lines[-1]
    assert json.loads(json.dumps(report.as_dict()))["mean_flips"] == pytest.approx(report.mean_flips, abs=1e-6)


def test_a_change_is_applied_to_the_pixels_as_written():
    im = Image.fromarray(np.array([[0, 128, 255]], np.uint8)).convert("RGB")
    assert np.asarray(Change("x", gain=0.5).apply(im))[0, :, 0].tolist() == [0, 64, 128]
    with pytest.raises(ValueError, match="at least one image"):
        intensity_check(by_place, [], [], classes=2)
    with pytest.raises(ValueError, match="2 images but 1 true classes"):
        intensity_check(by_place, [im, im], [0], classes=2)


def test_the_bench_prints_the_check_for_a_trained_model(trained_synthetic, capsys, tmp_path):
    from bench.intensity import main

    out = tmp_path / "intensity.json"
    main(["--model", str(trained_synthetic.model_dir), "--data", str(trained_synthetic.data_dir / "test"),
          "--limit", "12", "--json", str(out)])
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert "intensity check on 12 images" in printed and "gamma 1.25" in printed
    assert figures["images"] == 12 and len(figures["changes"]) == len(CHANGES)
    assert figures["accuracy"]["mean"] >= 0.9, figures
    stray = tmp_path / "scans" / "unsorted"
    stray.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(stray / "a.png")
    with pytest.raises(SystemExit, match="no image sits in a folder named after one of the model's classes"):
        main(["--model", str(trained_synthetic.model_dir), "--data", str(stray)])
    with pytest.raises(SystemExit):
        main(["--model", "m", "--data", "d", "--limit", "0"])
    assert "--limit must be at least 1" in capsys.readouterr().err
