"""python -m train: fine-tune a timm ResNet50 on class-per-folder images and write a model folder.

argparse lives here only; it builds a TrainConfig (recipe defaults, then explicit flags) and
calls train.run.fit. User errors end with one clear line and exit code 2, never a traceback (hub.cli).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from hub.cli import run_command
from hub.errors import ConfigError, PublishError
from hub.model import GLOBAL_POOLS
from train.config import OPTIMIZERS, RECIPES, SPLITS, UNFREEZABLE, TrainConfig, build_config

DEFAULTS = TrainConfig(data="<required>")


def comma_list(text: str) -> tuple[str, ...]:
    """A comma list as a tuple of its non-empty parts."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def floats(text: str) -> tuple[float, ...]:
    """A comma list of numbers (--mean, --std)."""
    try:
        return tuple(float(part) for part in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers such as 0.5,0.5,0.5, got {text!r}") from None


def _d(name: str) -> str:
    """Help suffix with the default of the her2 recipe and, where it differs, of mri."""
    her2, mri = RECIPES["her2"].get(name, getattr(DEFAULTS, name)), RECIPES["mri"].get(name, getattr(DEFAULTS, name))
    def show(v):
        return ",".join(v) if isinstance(v, tuple) else v

    return f" (her2: {show(her2)}; mri: {show(mri)})" if her2 != mri else f" (default: {show(her2)})"


def parser() -> argparse.ArgumentParser:
    """The command line; every recipe field can be overridden."""
    p = argparse.ArgumentParser(
        prog="python -m train", description=__doc__.splitlines()[0],
        epilog="Example: python -m train --data DIR --recipe mri --out runs/mri  (then, with the "
               "epoch count it validated: --val-split 0 --test-data TEST, a final fit on every image)")
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="DIR", help="class-per-folder images: DIR/<class>/<image>")
    g.add_argument("--val-data", metavar="DIR", help="validation images (default: a stratified split of --data)")
    g.add_argument("--test-data", metavar="DIR", help="held-out test images, evaluated once at the end")
    g.add_argument("--val-split", type=float, metavar="F",
                   help="share of --data for validation without --val-data; 0 = a final fit on all of it "
                        f"(needs --test-data and --patience 0){_d('val_split')}")
    g.add_argument("--split", choices=SPLITS,
                   help="how --val-split is drawn: random (per class; leaks when a patient has several images), "
                        "ordered (per class, the last files in natural order: neighbouring slices stay together), "
                        f"group (whole patients/slides: --group-pattern, --groups or DICOM PatientID){_d('split')}")
    g.add_argument("--group-pattern", metavar="REGEX",
                   help="--split group: the group of a file is the regex's first capture group on its path "
                        "relative to --data, e.g. '^[^/]+/(\\w+?)_' for <class>/<patient>_<n>.png")
    g.add_argument("--groups", dest="group_csv", metavar="FILE.csv",
                   help="--split group: a CSV with the header path,group (paths relative to --data)")
    g.add_argument("--leakage-check", action=argparse.BooleanOptionalAction,
                   help="report near-duplicate images across train/val/test (perceptual hash) in metrics.json "
                        "and the card (default: on)")
    g = p.add_argument_group("recipe (each flag overrides the recipe)")
    g.add_argument("--recipe", default="her2", choices=sorted(RECIPES),
                   help="her2: ImageNet init, layer3+layer4+head, Adam; mri: all layers, AdamW, balanced "
                        "classes, ordered split, crop/smoothing/EMA/TTA, 128 px (default: her2)")
    g.add_argument("--epochs", type=int, help=f"maximum epochs{_d('epochs')}")
    g.add_argument("--img-size", type=int, metavar="PX",
                   help=f"square input size (recipes: {RECIPES['her2']['img_size']}; with --init MODEL: the parent's)")
    g.add_argument("--batch-size", type=int, help=f"images per step{_d('batch_size')}")
    g.add_argument("--lr", type=float, help=f"initial learning rate (cosine to --min-lr){_d('lr')}")
    g.add_argument("--min-lr", type=float, help=f"final learning rate{_d('min_lr')}")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimiser{_d('optimizer')}")
    g.add_argument("--momentum", type=float, help=f"SGD momentum{_d('momentum')}")
    g.add_argument("--weight-decay", type=float, help=f"weight decay{_d('weight_decay')}")
    g.add_argument("--unfreeze", type=comma_list, metavar="LIST",
                   help=f"'all' or a comma list of {','.join(UNFREEZABLE)}{_d('unfreeze')}")
    g.add_argument("--class-weights", choices=("balanced", "none"), help=f"loss weights per class{_d('class_weights')}")
    g.add_argument("--dropout", type=float, help=f"dropout before the linear head{_d('dropout')}")
    g.add_argument("--patience", type=int, help=f"early stopping on val loss, 0 = off{_d('patience')}")
    g.add_argument("--rotation", type=float, metavar="DEG", help=f"random rotation range{_d('rotation')}")
    g.add_argument("--color-jitter", type=float, help=f"brightness/contrast/saturation jitter{_d('color_jitter')}")
    g.add_argument("--intensity", type=float, metavar="S",
                   help=f"random gain and gamma exp(U(-S, S)) per image, black stays black; 0 = off{_d('intensity')}")
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction, help=f"random horizontal flips{_d('hflip')}")
    g.add_argument("--scale-min", type=float, metavar="F",
                   help=f"below 1: timm random-resized-crop over (F, 1) of the image{_d('scale_min')}")
    g.add_argument("--label-smoothing", type=float, metavar="F", help=f"label smoothing{_d('label_smoothing')}")
    g.add_argument("--mixup", type=float, metavar="ALPHA", help=f"Mixup alpha, 0 = off (timm.data.Mixup){_d('mixup')}")
    g.add_argument("--cutmix", type=float, metavar="ALPHA", help=f"CutMix alpha, 0 = off{_d('cutmix')}")
    g.add_argument("--ema-decay", type=float, metavar="D",
                   help=f"EMA of the weights (timm ModelEmaV3), evaluated and published; 0 = off{_d('ema_decay')}")
    g.add_argument("--warmup-epochs", type=int, metavar="N",
                   help=f"linear warmup before the cosine{_d('warmup_epochs')}")
    g.add_argument("--tta", action=argparse.BooleanOptionalAction,
                   help=f"flip test-time augmentation at evaluation{_d('tta')}")
    g.add_argument("--temperature", metavar="auto|none|T|MODEL",
                   help="temperature scaling of the published probabilities, softmax(logits / T), into config.json: "
                        "auto fits T on the validation block (a final fit has none: pass the validated run's model "
                        "folder, whose fitted T is carried, or a number); none leaves them raw (default: auto)")
    g = p.add_argument_group("expert regions (YOLO .txt boxes, a COCO .json, or mask images; matched by path)")
    g.add_argument("--annotations", metavar="DIR",
                   help="regions of --data images: training grounds the decision in them (train.grounding), "
                        "validation images get localisation figures; images without one train as usual")
    g.add_argument("--test-annotations", metavar="DIR",
                   help="regions of --test-data images, read once at the end: the card's "
                        "'Does the model look at the lesion?' table")
    g.add_argument("--guide-weight", type=float, metavar="W",
                   help=f"weight of the grounding loss against cross-entropy{_d('guide_weight')}")
    g.add_argument("--counterfactual", type=float, metavar="P",
                   help="share of annotated training images shown with the region hidden (blur-filled) and "
                        f"trained toward no class: context alone must not predict it{_d('counterfactual')}")
    g.add_argument("--context-swap", type=float, metavar="Q",
                   help="share of annotated training images shown with their region pasted into another annotated "
                        "image (its own region blur-filled), keeping their label: the context stops predicting "
                        f"the class{_d('context_swap')}")
    g.add_argument("--output-stride", type=int, choices=(8, 16, 32),
                   help="16: dilate the last stage for a 2x finer heatmap (with --init MODEL: the parent's)"
                        f"{_d('output_stride')}")
    g.add_argument("--global-pool", choices=GLOBAL_POOLS,
                   help="the head's pooling of the last stage (timm's global_pool): avg makes a logit the mean of "
                        "the cells' logits, so grounded evidence is diluted by the lesion's area; max is not, avgmax "
                        f"half as much (with --init MODEL: the parent's){_d('global_pool')}")
    g = p.add_argument_group("weights")
    g.add_argument("--pretrained", action=argparse.BooleanOptionalAction,
                   help="start from ImageNet weights downloaded through timm (her2: yes; mri: no, every mri figure "
                        "is from scratch and the ImageNet variant is unmeasured)")
    g.add_argument("--init", metavar="MODEL",
                   help="retrain a model instead: a model folder or org/repo[@rev] (tag, branch or commit; "
                        "head rows carried over by label name, preprocessing kept), or PATH.safetensors "
                        "(backbone weights; the head too when its shape fits)")
    g.add_argument("--init-head", metavar="keep|reset",
                   help="keep: carry the --init model's head over by label name; reset: a fresh head (default: keep)")
    g.add_argument("--arch", help=f"timm architecture{_d('arch')}")
    g.add_argument("--pretrained-tag", help=f"timm weight tag for --pretrained{_d('pretrained_tag')}")
    g = p.add_argument_group("preprocessing (default: the --init model's, else the ImageNet weights')")
    g.add_argument("--mean", type=floats, metavar="R,G,B", help="normalisation mean per channel")
    g.add_argument("--std", type=floats, metavar="R,G,B", help="normalisation standard deviation per channel")
    g.add_argument("--interpolation", metavar="MODE", help="resize interpolation: bicubic, bilinear or nearest")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, help=f"random seed (splits, init, augmentation){_d('seed')}")
    g.add_argument("--workers", type=int, help=f"data-loading processes{_d('workers')}")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), help=f"where to train{_d('device')}")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="bf16/fp16 autocast and channels_last on GPUs, bf16 on CPUs with native bf16 "
                        "(AVX512-BF16/AMX); elsewhere fp32 (default: off)")
    g.add_argument("--out", metavar="DIR", help=f"model folder to write{_d('out')}")
    g.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints after an interruption")
    g = p.add_argument_group("publish and card")
    g.add_argument("--push-to", metavar="REPO_ID", help="push the model folder to this Hub repo at the end")
    g.add_argument("--tag", metavar="vN|auto", help="tag the pushed commit (auto: next free vN)")
    g.add_argument("--license", help=f"license in the model card{_d('license')}")
    g.add_argument("--dataset-id", metavar="HUB_DATASET", help="Hub dataset id for the model card")
    g.add_argument("--homepage", metavar="URL", help="project link in the model card (default: none)")
    g.add_argument("--tags", type=comma_list, metavar="LIST",
                   help="comma list of card tags added to timm, image-classification, grad-cam, score-cam")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train (and push); every expected failure is one line on stderr and exit code 2
    (hub.cli's policy, shared with python -m hub and python -m space)."""
    args = vars(parser().parse_args(argv))
    recipe = args.pop("recipe")
    try:
        cfg = build_config(recipe, **args)
    except ConfigError as exc:
        parser().error(str(exc))
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    # A full disk or a vanished folder mid-run: the checkpoints written so far stay, so --resume continues.
    return run_command(lambda: train_and_push(cfg),
                       os_hint="free space or choose another --out, then run the same command with --resume",
                       interrupted="interrupted; continue with the same command plus --resume "
                                   f"(checkpoints in {cfg.out}/checkpoints)")


def train_and_push(cfg: TrainConfig) -> None:
    """fit, then (rank 0 under torchrun) push; a failed push says that training finished and how to retry."""
    from hub.publish import push
    from train.run import fit

    out = fit(cfg)
    if not cfg.push_to or int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 pushes
        return
    try:
        result = push(out, cfg.push_to, tag=cfg.tag)
    except PublishError as exc:
        retry = f"python -m hub push {cfg.out} {cfg.push_to}" + (f" --tag {cfg.tag}" if cfg.tag else "")
        raise PublishError(f"training finished but the push failed: {exc}; retry with: {retry}") from None
    print(f"pushed to {result.commit_url}" + (f"\ntagged {result.tag}" if result.tag else ""))
    print("load it with:\n" + result.snippet())


if __name__ == "__main__":
    sys.exit(main())
