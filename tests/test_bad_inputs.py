"""One table of bad (and merely odd) inputs across every surface a user touches.

Each row: a surface, how to make the input, and the message the user must get (None: the input is
odd but valid and must just work). For every row: the error is our own typed error or the CLI's
one-line `error:` with exit code 2, never a traceback; and no file that existed before is changed
or lost. Surfaces:

- image: `hub.images.load_image`, and the same file uploaded to the app (`handlers.classify`)
- train: `python -m train` (its `main`), with --out pointing at an earlier model folder (bad `--init`
  parents on the test Hub included)
- model: `hub.from_pretrained` on a local folder, and the app started on it (`serving.load`)
- repo: `hub.from_pretrained` / `hub.publish.push` against the test Hub
- app: the app's request handlers (what /classify, /gradcam, /scorecam, /compare call)
- space: the app started as a Space starts it (MODEL_ID, MODEL_REVISION, HF_TOKEN from the environment):
  no model, but a banner saying why, and the app builds
- deploy: `python -m space deploy` against a Space deployed before: one line, exit 2, the Space's files unchanged
  (git missing or hanging included)
- serve: `python -m space` (its `main`) on the command line: one line, exit 2, before any model is loaded
- explain: `hub.explain.explain` / `Classifier.explain` from Python
- explain-cli: `python -m hub explain` (its `main`), which must not create --out or touch the model folder

The three command lines share one policy (`hub.cli`): a failure the user can cause or meet (a bad option, no GPU, a
full disk, a timeout, no network) is one `error:` line on stderr and exit code 2.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from app_fixtures import random_model_folder
from PIL import Image

from train.synthetic import make_dataset


@dataclass(frozen=True)
class Row:
    surface: str
    make: Callable  # (ctx) -> the input (a path, argv list, repo source or call)
    message: Optional[str]  # substring the user must see; None = valid, must work

    def __repr__(self) -> str:
        return self.surface


# ---- inputs ---------------------------------------------------------------------------------------------

def _gradient(size=(40, 30)) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(x, (size[1], 1))] * 3, axis=-1))


def file_with(name: str, write: Callable[[Path], object]) -> Callable:
    def make(ctx):
        path = ctx.tmp / name
        write(path)
        return path
    return make


def truncated_jpeg(path: Path) -> None:
    _gradient((256, 256)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:3000])


def animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def dicom(edit: Callable) -> Callable[[Path], None]:
    """Write a small uncompressed DICOM file, changed by `edit(dataset)` before saving."""
    def write(path: Path) -> None:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = SecondaryCaptureImageStorage
        ds.set_pixel_data(np.arange(64, dtype=np.uint16).reshape(8, 8), "MONOCHROME2", 16)
        edit(ds)
        ds.save_as(path, enforce_file_format=True)
    return write


def no_pixels(ds) -> None:
    del ds.PixelData


def zero_size(ds) -> None:
    ds.Rows, ds.Columns, ds.PixelData = 0, 0, b""


def groups_csv(extra_rows: tuple[str, ...] = (), drop: int = 0) -> Callable:
    """A --groups CSV for `dataset(ctx)`: one group per file, minus the first `drop` files, plus extra rows."""
    def make(ctx):
        root = dataset(ctx)
        rows = [f"{p.relative_to(root).as_posix()},patient{i}" for i, p in enumerate(sorted(root.rglob("*.png")))]
        path = ctx.tmp / "groups.csv"
        path.write_text("path,group\n" + "\n".join([*rows[drop:], *extra_rows]) + "\n")
        return path
    return make


def dataset(ctx, **changes) -> Path:
    """A valid 3-class dataset (4 images each) with folders changed by `changes` (name -> None/'corrupt'/'rename:x')."""
    root = make_dataset(ctx.tmp / "data", classes=3, per_class=4, size=32, seed=0)
    for name, change in changes.items():
        if change is None:
            shutil.rmtree(root / name)
        elif change == "empty":
            shutil.rmtree(root / name)
            (root / name).mkdir()
        elif change == "corrupt":
            for f in (root / name).glob("*.png"):
                f.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        else:
            (root / name).rename(root / change.removeprefix("rename:"))
    return root


def train_args(*extra, data=dataset) -> Callable:
    """argv for `python -m train` on `data(ctx)` (extra may hold callables of ctx)."""
    def make(ctx):
        return ["--data", str(data(ctx)), "--no-pretrained", "--epochs", "1",
                *[str(e(ctx)) if callable(e) else e for e in extra]]
    return make


def model_folder(edit: Callable[[Path], object]) -> Callable:
    def make(ctx):
        folder = shutil.copytree(ctx.model, ctx.tmp / "model", ignore=shutil.ignore_patterns("checkpoints"))
        edit(folder)
        return folder
    return make


def edit_config(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(changes)
        (folder / "config.json").write_text(json.dumps(cfg))
    return edit


def pickle_only(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 a pickle we will never open")


def repo(kind: str) -> Callable:
    """A repo source on the test Hub: 'missing', a 'rev' that does not exist, a 'pickle'-only repo, a 'private'
    one (with no token left to read it) or a 'resnet18' one."""
    def make(ctx):
        from huggingface_hub import HfApi

        repo_id = ctx.request.getfixturevalue("repo_id")
        ctx.request.getfixturevalue("hub_token")
        if kind == "missing":
            return repo_id
        api = HfApi()
        api.create_repo(repo_id, private=kind == "private")
        if kind == "pickle":
            api.upload_file(path_or_fileobj=(ctx.model / "config.json").read_bytes(), path_in_repo="config.json",
                            repo_id=repo_id)
            api.upload_file(path_or_fileobj=b"\x80\x04 pickle", path_in_repo="pytorch_model.bin", repo_id=repo_id)
            return repo_id
        if kind == "resnet18":
            folder = random_model_folder(ctx.tmp / "resnet18", size=32, arch="resnet18")
            api.upload_folder(folder_path=str(folder), repo_id=repo_id)
            return repo_id
        api.upload_folder(folder_path=str(ctx.model), repo_id=repo_id)
        if kind == "private":
            ctx.request.getfixturevalue("monkeypatch").delenv("HF_TOKEN")
            return repo_id
        return f"{repo_id}@v99"
    return make


def push_with_token(token: str, trained: bool = True) -> Callable:
    """A push of a model folder (with the files training writes, when `trained`) using `token`."""
    def make(ctx):
        ctx.request.getfixturevalue("hub_server")
        from hub.publish import push

        folder = shutil.copytree(ctx.model, ctx.tmp / "model", ignore=shutil.ignore_patterns("checkpoints"))
        if trained:
            for name in ("metrics.json", "train_config.json"):
                (folder / name).write_text("{}")
        return lambda: push(folder, "testorg/never-created", token=token)
    return make


def handler(name: str, *args, served="ok") -> Callable:
    """A call of space/handlers.py `name` with (served, *args); args may be callables of ctx."""
    def make(ctx):
        from space import handlers
        from space.serving import Served

        s = ctx.served if served == "ok" else Served(source="org/gone", revision="main", error=served)
        values = [a(ctx) if callable(a) else a for a in args]
        return lambda: getattr(handlers, name)(s, *values)
    return make


def explain_call(model_size: int = 64, **options) -> Callable:
    """A call of hub.explain.explain on a random resnet18 (`model_size` px input) with `options`."""
    def make(ctx):
        from app_fixtures import random_model_folder

        from hub import from_pretrained

        clf = from_pretrained(random_model_folder(ctx.tmp / "m", size=model_size, arch="resnet18"))
        return lambda: clf.explain(_gradient(), **options)
    return make


def flat_model_call(**options) -> Callable:
    """A call of hub.explain.explain on a model without any spatial feature map (Flatten + Linear)."""
    def make(ctx):
        import torch

        from hub.explain import explain

        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
        model(torch.zeros(1, 3, 32, 32))
        return lambda: explain(model, _gradient(), transform=lambda img: torch.zeros(3, 32, 32), labels=["a", "b", "c"],
                               **options)
    return make


def explain_cli(*extra, model_size: Optional[int] = None) -> Callable:
    """argv for `python -m hub explain` on the table's model (or a random resnet18 at `model_size` px)."""
    def make(ctx):
        from app_fixtures import random_model_folder

        model = ctx.model if model_size is None else random_model_folder(ctx.tmp / "m", size=model_size,
                                                                         arch="resnet18")
        return ["explain", str(model), sample(ctx), "--out", str(ctx.tmp / "out"), *extra]
    return make


def without_gpu(make: Callable) -> Callable:
    """`make`, on a machine without a CUDA GPU (the CI machine has none; a machine with one pretends)."""
    def wrapped(ctx):
        import torch

        ctx.request.getfixturevalue("monkeypatch").setattr(torch.cuda, "is_available", lambda: False)
        return make(ctx)
    return wrapped


def unreachable_hub(make: Callable) -> Callable:
    """`make`, with HF_ENDPOINT pointing at a port where nothing listens (the network is down)."""
    def wrapped(ctx):
        import socket

        with socket.socket() as s:  # a free port, closed again: connections to it are refused
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ctx.request.getfixturevalue("monkeypatch").setattr("huggingface_hub.constants.ENDPOINT",
                                                           f"http://127.0.0.1:{port}")
        return make(ctx)
    return wrapped


def explain_cli_annotated(write: Callable[[Path], object], *extra, folder: str = "ann") -> Callable:
    """argv for `python -m hub explain ... --annotations ann/` on the table's model and its one sample image
    (ok.png, 48 x 48, matched as 'ok'), with `write(ann)` filling the annotation folder."""
    def make(ctx):
        argv = explain_cli("--annotations", str(ctx.tmp / folder), *extra)(ctx)
        (ctx.tmp / "ann").mkdir(exist_ok=True)
        write(ctx.tmp / "ann")
        return argv
    return make


def mask_png(size: tuple[int, int], value: int) -> Callable[[Path], None]:
    return lambda folder: Image.new("L", size, value).save(folder / "ok.png")


def coco_of(file_name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "boxes.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": file_name, "width": 48, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [4, 4, 10, 10]}]}))


def space_env(model: str = "public", revision: str = "v1", token: bool = True) -> Callable:
    """The environment a Space starts with: MODEL_ID of a 'public' or 'private' repo (or 'none'), MODEL_REVISION,
    and HF_TOKEN only when `token`."""
    def make(ctx):
        from deploy_fixtures import model_repo

        env = {}
        if model != "none":
            ctx.request.getfixturevalue("hub_token")
            repo_id = model_repo(ctx.request.getfixturevalue("repo_id"), ctx.tmp, private=model == "private")
            env = {"MODEL_ID": repo_id, "MODEL_REVISION": revision}
        if token:
            env["HF_TOKEN"] = ctx.request.getfixturevalue("hub_token")
        return env
    return make


def deploy_args(*args: str, git: str = "installed") -> Callable:
    """A Space deployed once (a public model at v1), then argv for deploying to it again with `args`; with
    `git` "missing" (not on PATH) or "hanging" (every call sleeps past a 1 s timeout) for the second deploy."""
    def make(ctx):
        from deploy_fixtures import make_checkout, model_repo

        import space.deploy

        ctx.request.getfixturevalue("hub_token")
        repo_id = model_repo(ctx.request.getfixturevalue("repo_id"), ctx.tmp)
        ctx.request.getfixturevalue("monkeypatch").setattr(space.deploy, "CHECKOUT", make_checkout(ctx.tmp / "clone"))
        space_id = repo_id.replace("model-", "space-")
        space.deploy.deploy_space(space_id, repo_id, "v1")
        if git != "installed":
            broken_git(ctx, hanging=git == "hanging")
        return ["deploy", space_id, "--model", repo_id, *args]
    return make


def broken_git(ctx, hanging: bool) -> None:
    """PATH without git, or with a git that hangs (and space.deploy's git timeout cut to 1 s)."""
    import space.deploy

    monkeypatch = ctx.request.getfixturevalue("monkeypatch")
    bin_dir = ctx.tmp / "bin"
    bin_dir.mkdir()
    if not hanging:
        monkeypatch.setenv("PATH", str(bin_dir))
        return
    fake = bin_dir / "git"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # exec: the timeout's kill ends the sleep too
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(space.deploy, "GIT_TIMEOUT", 1.0)


def sample(ctx) -> str:
    path = ctx.tmp / "ok.png"
    _gradient((48, 48)).save(path)
    return str(path)


# ---- the table ------------------------------------------------------------------------------------------

ROWS = {
    # images: the loader and the app's upload path
    "zero-byte file": Row("image", file_with("empty.png", lambda p: p.write_bytes(b"")), "the file is empty (0 bytes)"),
    "text file named .png": Row("image", file_with("notes.png", lambda p: p.write_text("hello")), "not an image file"),
    "html named .jpg": Row("image", file_with("page.jpg", lambda p: p.write_text("<html><b>x</b></html>")),
                           "not an image file"),
    "truncated jpeg": Row("image", file_with("cut.jpg", truncated_jpeg), "corrupt or truncated"),
    "dicom without pixel data": Row("image", file_with("report.dcm", dicom(no_pixels)), "no pixel data"),
    "dicom of 0 x 0 pixels": Row("image", file_with("empty.dcm", dicom(zero_size)), "zero size (0x0)"),
    "dicom with a corrupt header": Row("image", file_with("broken.dcm", lambda p: p.write_bytes(
        b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f garbage")), "DICOM"),
    "30000x30000 png": Row("image", file_with("huge.png", lambda p: Image.new("1", (30000, 30000)).save(p)),
                           "too large"),
    "directory as image": Row("image", lambda ctx: ctx.tmp, "is a directory, not an image file"),
    "missing file": Row("image", lambda ctx: ctx.tmp / "gone.png", "no such file"),
    "16-bit tiff": Row("image", file_with("scan.tif", lambda p: Image.fromarray(
        np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(p)), None),
    "cmyk jpeg": Row("image", file_with("print.jpg", lambda p: _gradient().convert("CMYK").save(p)), None),
    "animated gif": Row("image", file_with("anim.gif", animated_gif), None),
    "palette png with transparency": Row("image", file_with("pal.png", lambda p: _gradient().convert("P").save(
        p, transparency=0)), None),
    # training data and command line
    "dataset path is a file": Row("train",
                                  train_args(data=lambda ctx: file_with("d.txt", lambda p: p.write_text("x"))(ctx)),
                                  "is a file; expected a folder"),
    "dataset path missing": Row("train", train_args(data=lambda ctx: ctx.tmp / "nowhere"), "no such directory"),
    "no class folders": Row("train", train_args(data=lambda ctx: (ctx.tmp / "flat").mkdir() or ctx.tmp / "flat"),
                            "no class folders found"),
    "empty class folder": Row("train", train_args(data=lambda ctx: dataset(ctx, cross="empty")),
                              "class folder 'cross' has no images"),
    "single class": Row("train", train_args(data=lambda ctx: dataset(ctx, cross=None, checker=None)),
                        "found only one class folder"),
    "class of only corrupt files": Row("train", train_args(data=lambda ctx: dataset(ctx, checker="corrupt")),
                                       "contain no readable image"),
    "html in a class name": Row("train", train_args(data=lambda ctx: dataset(ctx, ring="rename:<script>ring")),
                                "class folder name '<script>ring' contains '<>'"),
    "path separator in a class name": Row("train", train_args(data=lambda ctx: dataset(ctx, ring="rename:a\\b")),
                                          "contains '\\\\'"),
    "val classes differ": Row("train", train_args("--val-data", lambda ctx: dataset_copy(ctx, ring="rename:oval")),
                              "class folders of --val-data differ from --data"),
    "--group-pattern matches nothing": Row("train", train_args("--split", "group", "--group-pattern", "patient(\\d+)"),
                                           "--group-pattern 'patient(\\\\d+)' matches none of the 12 files"),
    "--group-pattern one group": Row("train", train_args("--split", "group", "--group-pattern", "(png)$"),
                                     "puts all 12 files in one group"),
    "--groups missing files": Row("train", train_args("--split", "group", "--groups", groups_csv(drop=2)),
                                  "2 image(s) of --data are not listed"),
    "--groups unknown files": Row("train", train_args("--split", "group", "--groups",
                                                      groups_csv(extra_rows=("ring/ghost.png,p9",))),
                                  "row(s) name files that are not in --data (e.g. 'ring/ghost.png'"),
    "split leaves a class without validation": Row("train", train_args("--split", "group", "--group-pattern",
                                                                       "^([^/]+)/"), "after the group split"),
    "--split group without groups": Row("train", train_args("--split", "group"),
                                        "--split group needs a group for every image"),
    "--img-size 0": Row("train", train_args("--img-size", "0"), "--img-size must be at least 32"),
    "--epochs -1": Row("train", train_args("--epochs", "-1"), "--epochs must be at least 1"),
    "--val-split 1.5": Row("train", train_args("--val-split", "1.5"), "--val-split"),
    "--val-split 0 without test data": Row("train", train_args("--val-split", "0", "--patience", "0"),
                                           "--val-split 0 leaves nothing to evaluate: pass --test-data DIR"),
    "--val-split 0 with early stopping": Row("train", train_args("--val-split", "0", "--patience", "3"),
                                             "--val-split 0 leaves no validation images to stop early on"),
    "--unfreeze layer9": Row("train", train_args("--unfreeze", "layer9"), "--unfreeze"),
    "--init a pickle": Row("train", train_args("--init", "weights.pth"), "pickled checkpoints are never loaded"),
    "--init missing file": Row("train", train_args("--init", lambda ctx: ctx.tmp / "none.safetensors"),
                               "none.safetensors"),
    "--init repo that does not exist": Row("train", train_args("--init", repo("missing")),
                                           "repository not found on the Hub"),
    "--init revision that does not exist": Row("train", train_args("--init", repo("rev")),
                                               "revision 'v99' not found"),
    "--init private repo without a token": Row("train", train_args("--init", repo("private")),
                                               "or it is private and no valid token was given: set HF_TOKEN"),
    "--init pickle-only repo": Row("train", train_args("--init", repo("pickle")), "pickled weights are never loaded"),
    "--init repo of another architecture": Row("train", train_args("--init", repo("resnet18")),
                                               "the parent is a resnet18 but this run trains a resnet50 (--arch)"),
    "train on --device cuda without a GPU": Row("train", without_gpu(train_args("--device", "cuda")),
                                                "--device cuda: no CUDA GPU is available here"),
    "--init-head unknown": Row("train", train_args("--init", lambda ctx: ctx.model, "--init-head", "fresh"),
                               "--init-head must be 'keep' (carry the head over by label name) or 'reset'"),
    # model folders
    "config num_classes wrong": Row("model", model_folder(edit_config(num_classes=7)),
                                    "num_classes=7 but the weights have 3"),
    "pytorch_model.bin only": Row("model", model_folder(pickle_only), "pickled weights are never loaded"),
    "config.json not json": Row("model", model_folder(lambda f: (f / "config.json").write_text("{nope")),
                                "not valid JSON"),
    "no config.json": Row("model", model_folder(lambda f: (f / "config.json").unlink()), "no config.json"),
    "corrupt safetensors": Row("model", model_folder(lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64)),
                               "not a readable safetensors file"),
    "too few label names": Row("model", model_folder(edit_config(label_names=["a", "b"])),
                               "has 2 label_names but the weights have 3 outputs"),
    "duplicate label names": Row("model", model_folder(edit_config(label_names=["a", "a", "b"])),
                                 "label_names has duplicates ['a']"),
    "model folder missing": Row("model", lambda ctx: ctx.tmp / "no-model", "no such folder"),
    # repos on the Hub
    "revision that does not exist": Row("repo", repo("rev"), "revision 'v99' not found"),
    "repo that does not exist": Row("repo", repo("missing"), "repository not found on the Hub"),
    "pickle-only repo": Row("repo", repo("pickle"), "pickled weights are never loaded"),
    "empty token": Row("push", push_with_token(""), "no Hugging Face token"),
    "blank token": Row("push", push_with_token("   "), "no Hugging Face token"),
    "push an untrained folder": Row("push", push_with_token("hf_x", trained=False), "has no metrics.json"),
    # app requests
    "no image uploaded": Row("app", handler("classify", None), "No image: upload one"),
    "unknown target class": Row("app", handler("explain", sample, "gradcam", "tumour"), "Unknown class 'tumour'"),
    "unknown method": Row("app", handler("explain", sample, "lime"), "Unknown method 'lime'"),
    "opacity out of range": Row("app", handler("explain", sample, "scorecam", "", 3.0),
                                "Opacity must be between 0 and 1"),
    "opacity not a number": Row("app", handler("explain", sample, "gradcam", "", "lots"),
                                "Opacity must be a number"),
    "model failed to load": Row("app", handler("classify", sample, served="the Hub cannot be reached"),
                                "The model is not available: the Hub cannot be reached"),
    "A vs A in the app": Row("app", handler("compare", sample, "ring vs ring"), "'A vs B' needs two different classes"),
    "A vs unknown in the app": Row("app", handler("explain", sample, "gradcam", "ring vs tumour"),
                                   "Unknown class 'tumour'"),
    # explanations from Python and from the command line
    "contrast names one class twice": Row("explain", explain_call(target=("ring", "ring")),
                                          "needs two different classes, got 'ring' twice"),
    "contrast names an unknown class": Row("explain", explain_call(target=("ring", "tumour")),
                                           "unknown target label 'tumour'"),
    "steps 1": Row("explain", explain_call(steps=1), "steps must be a whole number of at least 2"),
    "input too small for the layer": Row("explain", explain_call(32, method="gradcam"),
                                         "gives a 1x1 map at this model's input size"),
    "no spatial feature map": Row("explain", flat_model_call(method="gradcam"), "has no feature_info"),
    "layer without a spatial map": Row("explain", flat_model_call(method="gradcam", layer="1"), "not a spatial map"),
    "cli: contrast A vs A": Row("explain-cli", explain_cli("--target", "ring vs ring"), "got 'ring' twice"),
    "cli: contrast with an unknown class": Row("explain-cli", explain_cli("--target", "ring vs tumour"),
                                               "unknown target label 'tumour'"),
    "cli: --steps 1": Row("explain-cli", explain_cli("--steps", "1"), "--steps must be a whole number of at least 2"),
    "cli: --steps 0 with --sanity": Row("explain-cli", explain_cli("--steps", "0", "--sanity"), "--steps must be"),
    "cli: input too small for the layer": Row("explain-cli", explain_cli(model_size=32),
                                              "gives a 1x1 map at this model's input size"),
    # python -m hub explain --annotations: the reader's refusals, before anything is written
    "cli: annotation for a missing image": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "gone.txt").write_text("0 0.5 0.5 0.2 0.2\n")), "gone.txt has no image gone.* under the image"),
    "cli: malformed YOLO line": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "ok.txt").write_text("0 0.5 0.5\n")), "ok.txt line 1: not a YOLO box 'class cx cy w h'"),
    "cli: YOLO box outside [0, 1]": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "ok.txt").write_text("0 1.2 0.5 0.1 0.1\n")), "ok.txt line 1: box outside the image"),
    "cli: mask of another size": Row("explain-cli", explain_cli_annotated(mask_png((10, 12), 255)),
                                     "ok.png is 10x12 but its image"),
    "cli: all-zero mask": Row("explain-cli", explain_cli_annotated(mask_png((48, 48), 0)),
                              "ok.png is all zero (no region)"),
    "cli: COCO file naming an unknown image": Row("explain-cli", explain_cli_annotated(coco_of("scans/other.png")),
                                                  "names image 'scans/other.png', which is not under the image"),
    "cli: --annotations matching no image": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "ok.txt").write_text("")), "matches none of the 1 image(s)"),
    "cli: --annotations folder missing": Row("explain-cli", explain_cli_annotated(lambda d: None, folder="nowhere"),
                                             "nowhere: no such file or folder"),
    "cli: annotated image without a class folder": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n")), "not in a folder named after one of the model's"),
    "cli: --tolerance -1": Row("explain-cli", explain_cli_annotated(
        lambda d: (d / "ok.txt").write_text("0 0.5 0.5 0.2 0.2\n"), "--tolerance", "-1"), "--tolerance must be >= 0"),
    "cli: --tolerance without --annotations": Row("explain-cli", explain_cli("--tolerance", "5"),
                                                  "add --annotations DIR"),
    # python -m hub explain on what this machine or the network lacks
    "cli: --device cuda without a GPU": Row("explain-cli", without_gpu(explain_cli("--device", "cuda")),
                                            "--device cuda: no CUDA GPU is available here; use --device auto or cpu"),
    "cli: --device gpu": Row("explain-cli", explain_cli("--device", "gpu"),
                             "--device gpu: not a device; use auto, cpu, cuda, cuda:N or mps"),
    "cli: a Hub model while the Hub is unreachable": Row("explain-cli", unreachable_hub(
        lambda ctx: ["explain", "org/model", sample(ctx), "--out", str(ctx.tmp / "out")]),
        "the Hub cannot be reached and this revision is not in the local cache"),
    # python -m space on the command line
    "serve on --device cuda without a GPU": Row("serve", without_gpu(lambda ctx: [
        "--model", str(ctx.model), "--device", "cuda"]), "--device cuda: no CUDA GPU is available here"),
    # a Space's start-up and deploys
    "Space with no MODEL_ID": Row("space", space_env(model="none"), "no model given: set MODEL_ID"),
    "private model, Space without a token": Row("space", space_env(model="private", token=False),
                                                "repository not found on the Hub (or it is private"),
    "MODEL_REVISION that does not exist": Row("space", space_env(revision="v99"), "revision 'v99' not found"),
    "deploy a revision that does not exist": Row("deploy", deploy_args("--revision", "v99"),
                                                 "revision 'v99' not found"),
    "deploy on --hardware that does not exist": Row("deploy", deploy_args("--hardware", "a100-huge"),
                                                    "--hardware 'a100-huge' is not a Space hardware"),
    "deploy when git is not installed": Row("deploy", deploy_args(git="missing"), "git is not installed"),
    "deploy when git hangs": Row("deploy", deploy_args(git="hanging"),
                                 "took more than 1 s (a held lock or a slow disk?); nothing was deployed"),
}


def dataset_copy(ctx, **changes) -> Path:
    """A second dataset (other folder) for --val-data."""
    sub = Ctx(ctx.tmp / "val", ctx.model, ctx.served, ctx.request)
    sub.tmp.mkdir()
    return dataset(sub, **changes)


@dataclass
class Ctx:
    tmp: Path
    model: Path
    served: object
    request: object


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return random_model_folder(tmp_path_factory.mktemp("bad-inputs") / "model", size=64)


@pytest.fixture(scope="module")
def served(model):
    from space.serving import load

    result = load(str(model), max_channels=4)
    assert result.ready, result.error
    return result


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (what must survive a failed command)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def expect(call: Callable, error: type | tuple, message: Optional[str]):
    """Run `call`; with a message, it must raise `error` saying it (one line, no traceback)."""
    if message is None:
        return call()
    with pytest.raises(error) as info:
        call()
    text = str(info.value)
    assert message in text, text
    assert "Traceback" not in text and "\n" not in text.strip()
    return None


def run_image(row, ctx, path, capsys):
    from hub.images import ImageError, load_image
    from space import handlers

    img = expect(lambda: load_image(path), ImageError, row.message)
    if img is not None:
        assert img.mode == "RGB" and min(img.size) > 0
    result = expect(lambda: handlers.classify(ctx.served, str(path)), handlers.UserError,
                    row.message and row.message.replace(str(path), f"'{Path(path).name}'"))
    if result is not None:
        assert list(result) and abs(sum(result.values()) - 1.0) < 1e-4
    if row.message and Path(path).name and Path(path) != ctx.tmp:
        # The app names the file the user knows, never the server's temporary upload path.
        with pytest.raises(handlers.UserError) as info:
            handlers.classify(ctx.served, str(path))
        assert str(Path(path).parent) not in str(info.value)


def run_train(row, ctx, argv, capsys):
    from train.__main__ import main

    previous = shutil.copytree(ctx.model, ctx.tmp / "previous-model")  # an earlier model folder in --out
    before = tree_digest(previous)
    capsys.readouterr()
    try:
        code = main([*argv, "--out", str(previous)])
    except SystemExit as exc:  # argparse-level errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert row.message in err and err.startswith(("error: ", "usage: ")) and "Traceback" not in err, err
    assert tree_digest(previous) == before


def run_model(row, ctx, folder, capsys):
    from hub import from_pretrained
    from hub.model import ModelLoadError
    from space.serving import load

    expect(lambda: from_pretrained(folder), ModelLoadError, row.message)
    served = load(str(folder))  # the app starts anyway and says why it has no model
    assert not served.ready and row.message in served.error


def run_repo(row, ctx, source, capsys):
    from hub import from_pretrained
    from hub.model import ModelLoadError

    expect(lambda: from_pretrained(source), ModelLoadError, row.message)


def run_call(row, ctx, call, capsys):
    from hub.publish import PublishError
    from space import handlers

    expect(call, (PublishError, handlers.UserError), row.message)


def run_explain(row, ctx, call, capsys):
    expect(call, ValueError, row.message)


def run_explain_cli(row, ctx, argv, capsys):
    from hub.__main__ import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and row.message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (ctx.tmp / "out").exists()  # nothing partial written


def run_space(row, ctx, env, capsys):
    import html

    from space.__main__ import serve_parser
    from space.app import build_demo, error_banner
    from space.serving import load

    monkeypatch = ctx.request.getfixturevalue("monkeypatch")
    for key in ("MODEL_ID", "MODEL_REVISION", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = serve_parser().parse_args([])
    served = load(args.model, args.revision, device="cpu")
    assert not served.ready and row.message in served.error and "\n" not in served.error, served.error
    assert html.escape(row.message) in error_banner(served)
    build_demo(served)  # the app still starts, and says why in the banner


def run_deploy(row, ctx, argv, capsys):
    from huggingface_hub import HfApi

    from space.__main__ import main

    space_id = argv[1]
    before = HfApi().list_repo_files(space_id, repo_type="space")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and row.message in err, err
    assert HfApi().list_repo_files(space_id, repo_type="space") == before  # nothing deleted from the Space


def run_serve(row, ctx, argv, capsys):
    from space.__main__ import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and row.message in err, err


RUNNERS = {"image": run_image, "train": run_train, "model": run_model, "repo": run_repo, "push": run_call,
           "app": run_call, "explain": run_explain, "explain-cli": run_explain_cli, "space": run_space,
           "deploy": run_deploy, "serve": run_serve}


def test_the_table_is_broad():
    surfaces = {row.surface for row in ROWS.values()}
    assert len([r for r in ROWS.values() if r.message]) >= 25
    assert surfaces == set(RUNNERS)


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input(name, tmp_path, model, served, request, capsys):
    row = ROWS[name]
    work = tmp_path / "work"
    work.mkdir()
    ctx = Ctx(work, model, served, request)
    made = row.make(ctx)
    model_before, work_before = tree_digest(model), tree_digest(work)
    RUNNERS[row.surface](row, ctx, made, capsys)
    assert tree_digest(model) == model_before
    after = tree_digest(work)
    assert {k: v for k, v in after.items() if k in work_before} == work_before  # nothing changed or lost

