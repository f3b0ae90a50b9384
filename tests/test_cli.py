"""The command lines: --help, recipe resolution and overrides, and one-line errors for bad options."""
from __future__ import annotations

import subprocess
import sys

import pytest

from hub.errors import ConfigError
from train.__main__ import main, parser
from train.config import RECIPES, build_config

FLAGS = ["--data", "--val-data", "--test-data", "--val-split", "--recipe", "--epochs", "--img-size", "--batch-size",
         "--lr", "--optimizer", "--weight-decay", "--unfreeze", "--class-weights", "--dropout", "--patience", "--seed",
         "--workers", "--pretrained", "--no-pretrained", "--init", "--device", "--amp", "--out", "--resume",
         "--push-to", "--tag", "--split", "--group-pattern", "--groups", "--leakage-check", "--scale-min",
         "--label-smoothing", "--mixup", "--cutmix", "--ema-decay", "--warmup-epochs", "--tta", "--homepage", "--tags",
         "--init-head", "--mean", "--std", "--interpolation"]


def test_help_documents_every_flag_with_defaults():
    done = subprocess.run([sys.executable, "-m", "train", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for flag in FLAGS:
        assert flag in done.stdout, flag
    text = " ".join(done.stdout.split())
    assert "(her2: 0.0001; mri: 0.05)" in text and "(default: 0.15)" in text  # defaults shown per recipe
    synth = subprocess.run([sys.executable, "-m", "train.synthetic", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert synth.returncode == 0 and "--per-class" in synth.stdout


def test_her2_recipe_defaults():
    cfg = build_config("her2", data="d")
    assert (cfg.pretrained, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.min_lr) == \
        (True, "adam", 1e-3, 1e-4, 20, 1e-6)
    assert cfg.unfreeze == ("layer3", "layer4", "fc") and cfg.dropout == 0.3 and cfg.patience == 5
    assert (cfg.img_size, cfg.batch_size, cfg.hflip, cfg.rotation) == (224, 32, True, 20.0) and cfg.color_jitter > 0


def test_mri_recipe_and_overrides():
    cfg = build_config("mri", data="d")
    assert (cfg.optimizer, cfg.unfreeze, cfg.class_weights, cfg.dropout) == ("adamw", ("all",), "balanced", 0.0)
    assert (cfg.split, cfg.ema_decay, cfg.tta, cfg.amp, cfg.patience) == ("ordered", 0.995, True, True, 0)
    assert cfg.pretrained is False  # every mri figure is from scratch; the ImageNet variant is unmeasured
    args = vars(parser().parse_args(["--data", "d", "--recipe", "mri", "--lr", "0.5", "--unfreeze", "layer4,fc",
                                     "--no-pretrained", "--epochs", "3", "--class-weights", "none"]))
    cfg = build_config(args.pop("recipe"), **args)
    assert (cfg.lr, cfg.unfreeze, cfg.pretrained, cfg.epochs, cfg.class_weights) == \
        (0.5, ("layer4", "fc"), False, 3, "none")
    assert cfg.optimizer == "adamw" and cfg.weight_decay == RECIPES["mri"]["weight_decay"]  # untouched: recipe's


@pytest.mark.parametrize("override,message", [
    (dict(img_size=0), "--img-size must be at least 32"),
    (dict(epochs=-1), "--epochs must be at least 1"),
    (dict(batch_size=0), "--batch-size"),
    (dict(lr=0.0), "--lr must be positive"),
    (dict(dropout=1.0), "--dropout"),
    (dict(val_split=1.5), "--val-split"),
    (dict(val_split=0.0, test_data="t"), "--val-split 0 leaves no validation images to stop early on"),
    (dict(val_split=0.0, patience=0), "--val-split 0 leaves nothing to evaluate"),
    (dict(val_split=0.0, patience=0, test_data="t", split="group", group_pattern="(p)"), "--val-split 0 makes no"),
    (dict(unfreeze=("layer9",)), "--unfreeze"),
    (dict(init="weights.pth"), "pickled checkpoints are never loaded"),
    (dict(tag="v1"), "--tag only makes sense with --push-to"),
    (dict(data=""), "--data is required"),
    (dict(init="model.onnx"), "not a model folder, a .safetensors file or a Hub repo id"),
    (dict(init="org/repo", init_head="fresh"), "--init-head must be 'keep'"),
    (dict(init_head="reset"), "--init-head reset needs --init"),
    (dict(mean=(0.5, 0.5)), "--mean takes three comma-separated numbers"),
    (dict(std=(0.2, 0.0, 0.2)), "all positive"),
    (dict(interpolation="cubic"), "--interpolation must be one of bicubic, bilinear, nearest"),
    (dict(split="patients"), "--split must be one of random, ordered, group"),
    (dict(group_pattern="(p\\d+)"), "--group-pattern and --groups only apply with --split group"),
    (dict(split="group", group_pattern="x", group_csv="g.csv"), "either --group-pattern or --groups"),
    (dict(scale_min=0.0), "--scale-min must be in"),
    (dict(label_smoothing=1.0), "--label-smoothing"),
    (dict(mixup=-1.0), "--mixup and --cutmix"),
    (dict(ema_decay=1.0), "--ema-decay must be in"),
    (dict(epochs=3, warmup_epochs=3), "--warmup-epochs must be >= 0 and below --epochs"),
    (dict(homepage="github.com/me"), "--homepage must be an http"),
    (dict(tags=("ok", "not ok")), "--tags takes a comma list"),
    (dict(output_stride=12), "--output-stride must be 8, 16 or 32"),
    (dict(global_pool="gem"), "--global-pool must be one of avg, max, avgmax"),
    (dict(guide_weight=-1.0), "--guide-weight must not be negative"),
    (dict(context_swap=0.5), "--context-swap needs --annotations"),
    (dict(annotations="boxes", context_swap=1.0), "--context-swap must be in"),
    (dict(annotations="boxes", context_swap=0.6, counterfactual=0.5), "add up to more than 1"),
    (dict(intensity=1.5), "--intensity must be in"),
    (dict(annotations="boxes", mixup=0.2), "--annotations cannot be combined with --mixup"),
    (dict(test_annotations="boxes"), "--test-annotations needs --test-data"),
])
def test_bad_options(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config("her2", **{"data": "d", **override})
    with pytest.raises(ConfigError, match="unknown --recipe"):
        build_config("cats", data="d")


def test_init_model_keeps_its_input_size_unless_given():
    assert build_config("her2", data="d", init="org/repo@v1").img_size is None  # None: the parent's size
    assert build_config("her2", data="d", init="org/repo@v1", img_size=96).img_size == 96
    assert build_config("her2", data="d", init="w.safetensors").img_size == 224  # a bare file has no size
    args = vars(parser().parse_args(["--data", "d", "--init", "org/repo@0123abc", "--mean", "0.5,0.4,0.3",
                                     "--interpolation", "bilinear"]))
    cfg = build_config(args.pop("recipe"), **args)
    assert (cfg.init, cfg.init_is_model, cfg.mean, cfg.interpolation) == \
        ("org/repo@0123abc", True, (0.5, 0.4, 0.3), "bilinear")


@pytest.mark.parametrize("argv,message", [
    (["--img-size", "0"], "--img-size must be at least 32"),
    (["--epochs", "-1"], "--epochs must be at least 1"),
])
def test_cli_bad_values_exit_2_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path)] + argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_data_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["--data", str(f), "--no-pretrained", "--out", str(tmp_path / "o")]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing"), "--no-pretrained", "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_a_full_disk_while_training_is_one_line_that_names_resume(tmp_path, capsys, monkeypatch):
    import errno

    from train import checkpoint
    from train.synthetic import make_dataset

    data = make_dataset(tmp_path / "data", classes=2, per_class=4, size=32)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "o" / "checkpoints" / "last.pt"))

    monkeypatch.setattr(checkpoint, "save_state", full)
    assert main(["--data", str(data), "--no-pretrained", "--arch", "resnet18", "--img-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--no-leakage-check", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--data", str(tmp_path), "--device", "cuda", "--no-pretrained", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA GPU is available here; use --device auto or cpu" in err and "Traceback" not in err
