"""End-to-end training on synthetic data: learning, the model folder contract, resume, weights."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import save_file

from hub import from_pretrained
from hub.errors import OutputError, WeightsError
from hub.model import PLOTS, ModelLoadError
from train.config import build_config
from train.run import fit
from train.synthetic import make_dataset

# Small but real: ResNet50 from scratch, 48 px, a few epochs; the classes differ by a tinted pattern.
FAST = dict(pretrained=False, unfreeze=("all",), img_size=48, batch_size=8, rotation=0.0, color_jitter=0.0,
            dropout=0.0, lr=1e-3, patience=0)


def _cfg(data, out, **kw):
    return build_config("her2", data=str(data), out=str(out), **{**FAST, **kw})


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_dataset(root / "train", classes=3, per_class=30, size=48, seed=0)
    make_dataset(root / "test", classes=3, per_class=10, size=48, seed=1)
    return root


@pytest.fixture
def trained(trained_synthetic):
    """The contract tests read the session's trained synthetic model folder (tests/train_fixtures.py: ResNet50,
    128 px, 6 epochs, 3 x 20 test images). They trained a 48 px model of their own until both pytest workers did so
    once each: 45 s and 43 s of setup in one run's --durations, where this adds nothing."""
    return trained_synthetic.model_dir


def test_learns_above_chance(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.6, metrics["test"]["accuracy"]  # chance is 1/3
    assert metrics["test"]["auc_macro"] >= 0.75


def test_model_folder_contents(trained):
    names = {p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file()}
    for name in ("model.safetensors", "config.json", "metrics.json", "history.csv", "train_config.json", "README.md",
                 "plots/confusion_matrix.png", "plots/roc.png", "plots/curves.png"):
        assert name in names, name
    assert not any(n.endswith((".bin", ".pth")) for n in names) and ".staging" not in str(names)
    config = json.loads((trained / "config.json").read_text())
    assert config["architecture"] == "resnet50" and config["label_names"] == ["checker", "cross", "ring"]
    pcfg = config["pretrained_cfg"]
    assert pcfg["input_size"] == [3, 128, 128] and pcfg["crop_pct"] == 1.0 and pcfg["num_classes"] == 3
    assert pcfg["mean"] == list(timm.data.IMAGENET_DEFAULT_MEAN) and "interpolation" in pcfg
    assert "hf_hub_id" not in pcfg and "url" not in pcfg  # the ImageNet source no longer describes these weights
    metrics = json.loads((trained / "metrics.json").read_text())
    for split in ("validation", "test"):
        m = metrics[split]
        for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "auc_macro", "log_loss",
                    "ece", "confusion_matrix", "per_class"):
            assert key in m, (split, key)
        assert set(m["per_class"]["ring"]) == {"precision", "recall", "f1", "auc", "support"}
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 60
    rows = list(csv.DictReader(open(trained / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"])  # cosine schedule
    tc = json.loads((trained / "train_config.json").read_text())
    assert tc["config"]["img_size"] == 128 and tc["versions"]["timm"] == timm.__version__
    assert tc["dataset"]["counts"]["test"] == {"checker": 20, "cross": 20, "ring": 20}
    assert len(tc["dataset"]["files_sha256"]) == 64
    for png in ("confusion_matrix", "roc", "curves"):
        assert Image.open(trained / "plots" / f"{png}.png").size[0] > 300


def test_card_parses_and_holds_metrics(trained):
    card = ModelCard.load(trained / "README.md")
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-classification"
    acc = json.loads((trained / "metrics.json").read_text())["test"]["accuracy"]
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["accuracy"].metric_value == pytest.approx(acc, abs=1e-6)
    assert results["accuracy"].dataset_split == "test"
    assert "not a medical device" in card.text and "plots/roc.png" in card.text
    assert card.data.base_model is None  # trained from scratch
    # The card says how validation was split, what the leakage check found, and the intervals.
    assert "Validation split: **random per class" in card.text and "near-copy in training" in card.text
    assert "95% CI" in card.text


def test_card_links_and_tags_come_from_the_user(trained):
    """No placeholder link and no forced tag: a homepage and extra tags only when the user gives them."""
    from hub.card import render_card

    config, metrics, train_config = (json.loads((trained / n).read_text())
                                     for n in ("config.json", "metrics.json", "train_config.json"))
    plain = render_card(config, metrics, train_config)
    assert "github.com" not in plain.text and "](http" not in plain.text.split("## Intended use")[0]
    assert "medical-imaging" not in plain.data.tags and {"timm", "grad-cam", "score-cam"} <= set(plain.data.tags)
    train_config["config"].update(homepage="https://example.org/project", tags=["medical-imaging", "mri"])
    given = render_card(config, metrics, train_config)
    assert "(https://example.org/project)" in given.text
    assert given.data.tags[-2:] == ["medical-imaging", "mri"] and given.data.tags.count("timm") == 1


def test_round_trip_identical_logits(trained, synth):
    clf = from_pretrained(trained, device="cpu")
    ref = timm.create_model(f"local-dir:{trained}", pretrained=True).eval()
    assert clf.labels == ref.pretrained_cfg["label_names"]
    transform = timm.data.create_transform(**timm.data.resolve_model_data_config(ref))
    img = Image.open(next((synth / "test" / "ring").glob("*.png"))).convert("RGB")
    with torch.inference_mode():
        expected = ref(transform(img).unsqueeze(0))
    assert torch.equal(clf.logits(img), expected)
    probs = clf.predict(img)
    assert list(probs) == sorted(probs, key=probs.get, reverse=True) and sum(probs.values()) == pytest.approx(1.0)
    # paths, numpy arrays and PIL images give the same answer
    path = next((synth / "test" / "ring").glob("*.png"))
    assert clf.predict(path) == clf.predict(np.asarray(img)) == probs


def test_from_pretrained_refuses_bad_folders(trained, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained, bad, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_classes"] = 5
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="num_classes=5 but the weights have 3 outputs"):
        from_pretrained(bad)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only has pytorch_model.bin: pickled weights are never loaded"):
        from_pretrained(bad)
    with pytest.raises(ModelLoadError, match="no such folder"):
        from_pretrained(tmp_path / "nothing-here")


def _metrics_without_time(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


# Code run in the training process before `python -m train`: it SIGKILLs the process at a known
# point, so the test does not race a poller that a busy machine may delay.
KILL_AFTER_FIRST_CHECKPOINT = """
import train.checkpoint as ck
save = ck.save_state
def save_then_die(*a, **k):
    save(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
ck.save_state = save_then_die
"""
KILL_WHILE_WRITING_SECOND_CHECKPOINT = """
import hub.files as files
replace, calls = os.replace, []
def die_before_second_last(src, dst):  # the new checkpoint is written, not yet renamed into place
    if str(dst).endswith("last.pt"):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
files.os.replace = die_before_second_last
"""


RESUME_KW = dict(epochs=2, seed=3, img_size=32)


@pytest.fixture(scope="module")
def uninterrupted(synth, tmp_path_factory):
    """The run both kills are compared with (trained once: it is the same run for both)."""
    out = tmp_path_factory.mktemp("uninterrupted") / "ref"
    return fit(_cfg(synth / "train", out, **RESUME_KW), log=lambda s: None, progress=False)


@pytest.mark.parametrize("kill", [KILL_AFTER_FIRST_CHECKPOINT, KILL_WHILE_WRITING_SECOND_CHECKPOINT],
                         ids=["after-checkpoint", "mid-write"])
def test_sigkill_then_resume_matches_uninterrupted(synth, uninterrupted, tmp_path, kill):
    kw, ref = RESUME_KW, uninterrupted
    out = tmp_path / "killed"
    argv = ["--data", str(synth / "train"), "--out", str(out), "--no-pretrained", "--unfreeze", "all",
            "--img-size", "32", "--batch-size", "8", "--rotation", "0", "--color-jitter", "0", "--dropout", "0",
            "--lr", "1e-3", "--patience", "0", "--epochs", "2", "--seed", "3"]
    script = f"import os, signal, sys\n{kill}\nfrom train.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = out / "checkpoints" / "last.pt"
    assert last.exists() and not (out / "metrics.json").exists()
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 1  # the checkpoint in place is whole: epoch 1's, never a half-written epoch 2
    stale = list((out / "checkpoints").glob(".*tmp*"))
    assert bool(stale) == (kill is KILL_WHILE_WRITING_SECOND_CHECKPOINT)
    fit(_cfg(synth / "train", out, resume=True, **kw), log=lambda s: None, progress=False)
    assert not list((out / "checkpoints").glob(".*tmp*"))  # resuming removed what the kill left behind
    a, b = _metrics_without_time(ref), _metrics_without_time(out)
    assert a["validation"]["confusion_matrix"] == b["validation"]["confusion_matrix"]
    assert b["validation"]["log_loss"] == pytest.approx(a["validation"]["log_loss"], abs=1e-6)
    ha = list(csv.DictReader(open(ref / "history.csv")))
    hb = list(csv.DictReader(open(out / "history.csv")))
    for ra, rb in zip(ha, hb):
        assert float(ra["val_loss"]) == pytest.approx(float(rb["val_loss"]), abs=1e-6)


def test_resume_refuses_other_options(synth, tmp_path):
    out = tmp_path / "m"
    fit(_cfg(synth / "train", out, epochs=1), log=lambda s: None, progress=False)
    with pytest.raises(ValueError, match=r"options differ.*lr"):
        fit(_cfg(synth / "train", out, epochs=2, lr=0.5, resume=True), log=lambda s: None, progress=False)


def test_init_from_safetensors(synth, tmp_path):
    donor = timm.create_model("resnet50", num_classes=10)
    path = tmp_path / "init.safetensors"
    save_file(donor.state_dict(), str(path))
    cfg = _cfg(synth / "train", tmp_path / "m", epochs=1, init=str(path), unfreeze=("fc",))
    logs = []
    fit(cfg, log=logs.append, progress=False)
    model = timm.create_model(f"local-dir:{tmp_path / 'm'}", pretrained=True)
    # only the head was trained, so the backbone is exactly the donor's
    assert torch.equal(model.conv1.weight, donor.conv1.weight)
    assert model.fc.weight.shape == (3, 2048)
    with pytest.raises(WeightsError, match="no such file"):
        fit(_cfg(synth / "train", tmp_path / "m2", init=str(tmp_path / "nope.safetensors")), log=lambda s: None)


def test_failed_weight_download_names_the_alternatives(synth, tmp_path):
    # A weight tag that exists nowhere: the download fails and the message says what to do instead.
    cfg = _cfg(synth / "train", tmp_path / "m", pretrained=True, pretrained_tag="no_such_weights_xyz")
    with pytest.raises(WeightsError, match=r"--no-pretrained.*--init PATH\.safetensors"):
        fit(cfg, log=lambda s: None, progress=False)


def test_unwritable_output_fails_before_training(synth, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot write there"):
        fit(_cfg(synth / "train", blocker / "sub"), log=lambda s: None)
    if os.geteuid() != 0:  # root ignores permission bits; the check above covers it there
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputError):
            fit(_cfg(synth / "train", ro), log=lambda s: None)


def test_disk_full_while_publishing_keeps_previous_model_folder(synth, tmp_path, trained, monkeypatch):
    import errno
    import shutil

    import train.output

    out = tmp_path / "model"
    shutil.copytree(trained, out, ignore=shutil.ignore_patterns("checkpoints"))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train.output, "plot_curves", full)  # fails after weights and metrics were staged
    with pytest.raises(OutputError, match="No space left on device.*left as they were"):
        fit(_cfg(synth / "train", out, epochs=1, img_size=32), log=lambda s: None, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and "checkpoints" not in p.parts}
    assert after == before and not (out / ".staging").exists()


@pytest.mark.parametrize("sync_every", [1, 3, 100])
def test_epoch_sums_match_per_step_values_and_nan_stops(sync_every):
    """Loss/accuracy summed on the device equal the per-step values; a NaN loss stops the epoch."""
    from train.engine import train_one_epoch

    torch.manual_seed(0)
    x, y = torch.randn(20, 6), torch.randint(0, 3, (20,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    model = torch.nn.Linear(6, 3)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # weights stay put: the sums are checkable
    loss_sum, correct, seen = train_one_epoch(model, loader, torch.nn.CrossEntropyLoss(), frozen,
                                              torch.device("cpu"), show=False, sync_every=sync_every)
    with torch.no_grad():
        logits = model(x)
    assert seen == 20 and correct == int((logits.argmax(1) == y).sum())
    assert loss_sum == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y, reduction="sum")), rel=1e-5)

    def nan_loss(logits, target):
        return torch.nn.functional.cross_entropy(logits, target) * float("nan")

    with pytest.raises(FloatingPointError, match="lower --lr"):
        train_one_epoch(model, loader, nan_loss, frozen, torch.device("cpu"), show=False, sync_every=sync_every)


def test_timm_recipe_parts_train_resume_and_publish(synth, tmp_path):
    """Random-resized-crop, label smoothing, Mixup/CutMix, EMA, warmup, flip TTA and --amp (bf16 +
    channels_last on a bf16 CPU) together: an interrupted run resumes to the same result, the
    weights published are loadable NCHW, and the schedule warms up."""
    kw = dict(epochs=2, img_size=32, scale_min=0.6, label_smoothing=0.1, mixup=0.2, cutmix=1.0, ema_decay=0.9,
              warmup_epochs=1, tta=True, amp=True)
    out = fit(_cfg(synth / "train", tmp_path / "m", **kw), log=lambda s: None, progress=False)
    # Interrupted after epoch 1's checkpoint, then resumed: the same run, EMA weights included.
    import train.checkpoint as ck

    save = ck.save_state

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    ck.save_state = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            fit(_cfg(synth / "train", tmp_path / "r", **kw), log=lambda s: None, progress=False)
    finally:
        ck.save_state = save
    resumed = fit(_cfg(synth / "train", tmp_path / "r", resume=True, **kw), log=lambda s: None, progress=False)
    a, b = _metrics_without_time(out), _metrics_without_time(resumed)
    assert b["validation"]["log_loss"] == pytest.approx(a["validation"]["log_loss"], abs=1e-5)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    metrics = json.loads((out / "metrics.json").read_text())
    n_train = sum(metrics["split"]["images"]["train"].values())
    assert set(state["ema"]) == set(state["model"])
    assert state["ema_updates"] >= 2 * (n_train // 8)  # one EMA update per optimiser step, two epochs
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 / 100) and float(rows[1]["lr"]) == pytest.approx(1e-3)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()  # contiguous weights were saved
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), from_pretrained(out, device="cpu").model(x), atol=1e-5)
    assert metrics["validation"]["intervals"]["accuracy"]["low"] <= metrics["validation"]["accuracy"]


def test_final_fit_trains_on_every_image_and_reports_test_only(synth, tmp_path):
    """--val-split 0: every --data image trains (no validation split, no early stopping), the last epoch's
    weights are published, and the figures, plots and card are the test set's and say so."""
    out = fit(_cfg(synth / "train", tmp_path / "m", epochs=2, val_split=0.0, test_data=str(synth / "test")),
              log=lambda s: None, progress=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert "validation" not in metrics and metrics["test"]["n"] == 30
    assert metrics["split"]["method"] == "none"
    assert sum(metrics["split"]["images"]["train"].values()) == 90  # all 3 x 30, none held out
    assert sum(metrics["split"]["images"]["val"].values()) == 0
    run = json.loads((out / "train_config.json").read_text())["run"]
    assert (run["epochs_run"], run["best_epoch"], run["best_val_loss"]) == (2, 2, None)
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["val_loss"] for r in rows] == ["", ""] and all(float(r["train_loss"]) > 0 for r in rows)
    # the published weights are those of the last epoch: the resumable state's model after epoch 2
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    published = from_pretrained(out, device="cpu").model.state_dict()
    assert last["epoch"] == 2 and torch.equal(published["fc.weight"], last["model"]["fc.weight"])
    card = ModelCard.load(out / "README.md")
    assert "final fit on every training image" in card.text and "no validation: the\nweights of the last epoch" \
        in card.text
    assert [r.dataset_split for r in card.data.eval_results] == ["test"] * 3
    assert all((out / rel).stat().st_size > 0 for rel in PLOTS)


def test_flip_tta_averages_the_image_and_its_mirror():
    from train.engine import predict

    class LeftHalf(torch.nn.Module):  # looks at the left half only: its mirror sees the right half
        num_classes = 2

        def forward(self, x):
            s = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
            return torch.stack([s, -s], dim=1)

    x = torch.zeros(1, 3, 4, 4)
    x[..., :2] = 1.0  # bright left, dark right
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(1, dtype=torch.long)))
    _, plain = predict(LeftHalf(), loader, torch.device("cpu"), show=False)
    _, tta = predict(LeftHalf(), loader, torch.device("cpu"), show=False, tta=True)
    mirror = torch.softmax(torch.tensor([[0.0, 0.0]]), 1).numpy()  # the mirror's left half is dark
    assert np.allclose(tta, (plain + mirror) / 2) and not np.allclose(tta, plain)
