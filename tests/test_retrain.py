"""Retrain from a published revision (`--init org/repo@REV`) against the test Hub: head, preprocessing, lineage.

v1 is trained once (32 px, one epoch) and pushed as `v1`; each test retrains from it. `setup()` builds a
run's model without training, so "the first step starts from v1" is checked on the model the loop
would train.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from app_fixtures import random_model_folder
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from train_fixtures import train_quiet

from hub import from_pretrained
from hub.errors import ConfigError, WeightsError
from hub.images import load_image
from hub.model import output_stride
from hub.publish import push
from train.__main__ import main
from train.config import TrainConfig, build_config
from train.distributed import World
from train.run import fit, setup
from train.synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(pretrained=False, epochs=1, batch_size=8, rotation=0.0, color_jitter=0.0)
QUICK_ARGS = ["--epochs", "1", "--batch-size", "8", "--rotation", "0", "--color-jitter", "0"]


@dataclass(frozen=True)
class Published:
    """v1 on the test Hub, the folder it was pushed from, and data to retrain on."""

    repo_id: str
    commit: str
    folder: Path
    data: Path  # the 3 classes v1 was trained on
    test: Path  # held-out images of the same 3 classes


@pytest.fixture(scope="module")
def published(hub_server, tiny_data, tmp_path_factory) -> Published:
    """v1: 32 px, one epoch on tiny_data, pushed to a fresh repo and tagged v1."""
    root = tmp_path_factory.mktemp("retrain")
    v1 = train_quiet(tiny_data, root / "v1", img_size=32, batch_size=8, epochs=1, seed=1)
    token = next(t for t, role in hub_server.tokens.items() if role == "write")
    repo_id = f"testorg/retrain-{uuid.uuid4().hex[:8]}"
    result = push(v1, repo_id, tag="auto", token=token)
    assert result.tag == "v1"
    test = make_dataset(root / "test", classes=3, per_class=4, size=64, seed=9)
    return Published(repo_id, result.commit, v1, tiny_data, test)


def _setup(data: Path, out: Path, init: str, logs: list, **overrides):
    """A retrain's run as it stands before its first step (model, preprocessing, loaders)."""
    cfg = build_config("her2", data=str(data), out=str(out), init=init, **{**QUICK, **overrides})
    return setup(cfg, World(), logs.append, False)


def _batch(data: Path, n: int = 6) -> list[Path]:
    return sorted(data.glob("*/*.png"))[:n]


def _init_lines(logs: list) -> list[str]:
    return [line for line in logs if line.startswith("--init ")]


def test_same_classes_keep_head_and_preprocessing(published, hub_token, tmp_path):
    logs: list[str] = []
    run = _setup(published.data, tmp_path / "v2", f"{published.repo_id}@v1", logs)
    v1 = from_pretrained(published.repo_id, revision="v1", device="cpu")
    images = _batch(published.data)
    # the run reads images exactly as v1 does (no --img-size/--mean/... given: v1's 32 px, mean, std, resize)
    x = v1.preprocess(images)
    assert torch.equal(torch.stack([run.loaders["eval_transform"](load_image(p)) for p in images]), x)
    assert {k: run.data_config[k] for k in v1.data_config} == v1.data_config
    assert run.data_config["input_size"] == (3, 32, 32)
    # first-step logits of v2 equal v1's on the same batch: backbone, BN statistics and head all carried over
    with torch.inference_mode():
        assert torch.equal(run.net.eval()(x), v1.model(x))
    assert _init_lines(logs) == [f"--init {published.repo_id}@v1 (commit {published.commit[:7]}): "
                                 "same 3 classes: head kept"]
    assert not [line for line in logs if "preprocessing differs" in line or "builds the network otherwise" in line]
    assert run.lineage["commit"] == published.commit and run.lineage["revision"] == "v1"


def test_preprocessing_override_is_said(published, hub_token, tmp_path):
    logs: list[str] = []
    run = _setup(published.data, tmp_path / "v2", f"{published.repo_id}@v1", logs, img_size=48, mean=(0.5, 0.5, 0.5))
    assert run.data_config["input_size"] == (3, 48, 48) and run.data_config["mean"] == (0.5, 0.5, 0.5)
    notes = [line for line in logs if "preprocessing differs" in line]
    assert len(notes) == 1 and "input_size (3, 32, 32) -> (3, 48, 48)" in notes[0] and "mean (0.485" in notes[0]
    assert "std" not in notes[0]  # only what changed is named


def test_a_network_built_otherwise_than_the_parent_is_said(published, hub_token, tmp_path):
    # pooling and stride are not in the weights: they load into either network, so the run must say so
    logs: list[str] = []
    run = _setup(published.data, tmp_path / "v2", f"{published.repo_id}@v1", logs, global_pool="max",
                 output_stride=16)
    notes = [line for line in logs if "builds the network otherwise" in line]
    assert len(notes) == 1 and "--global-pool avg -> max" in notes[0] and "--output-stride 32 -> 16" in notes[0]
    assert run.net.global_pool.pool_type == "max"


def test_a_retrain_keeps_the_parents_pooling_and_stride(published, tmp_path):
    # v1 built as max-pooled and dilated; v2 given no network flags must rebuild exactly that network
    v1 = train_quiet(published.data, tmp_path / "v1", img_size=32, batch_size=8, epochs=1, seed=1,
                     global_pool="max", output_stride=16)
    logs: list[str] = []
    run = _setup(published.data, tmp_path / "v2", str(v1), logs)
    assert (run.cfg.global_pool, run.cfg.output_stride) == ("max", 16)  # what train_config.json records
    assert run.net.global_pool.pool_type == "max" and output_stride(run.net) == 16
    assert not [line for line in logs if "builds the network otherwise" in line]
    parent = from_pretrained(v1, device="cpu")
    x = parent.preprocess(_batch(published.data))
    with torch.inference_mode():
        assert torch.equal(run.net.eval()(x), parent.model(x))


def test_only_a_model_parent_leaves_the_network_open():
    kept = build_config("mri", data="d", init="org/repo@v1")
    assert (kept.img_size, kept.global_pool, kept.output_stride) == (None, None, None)
    told = build_config("mri", data="d", init="org/repo@v1", global_pool="avgmax", output_stride=32)
    assert (told.global_pool, told.output_stride) == ("avgmax", 32)
    weights = build_config("mri", data="d", init="w.safetensors")  # a bare file says nothing about its network
    assert (weights.global_pool, weights.output_stride) == ("avg", 32)
    with pytest.raises(ConfigError, match="--global-pool must be one of"):  # None means "the parent's"
        TrainConfig(data="d", global_pool=None)


def _rename(root: Path, old: str, new: str) -> Path:
    (root / old).rename(root / new)
    return root


def test_class_changes_carry_head_rows_by_name(published, hub_token, tmp_path):
    v1 = from_pretrained(published.repo_id, revision="v1", device="cpu")
    assert v1.labels == ["checker", "cross", "ring"]
    # one class added whose name sorts first: every old class moves one row down
    added = _rename(make_dataset(tmp_path / "added", classes=4, per_class=4, size=32, seed=1), "stripes", "apple")
    logs: list[str] = []
    run = _setup(added, tmp_path / "a", f"{published.repo_id}@v1", logs)
    fc, old = run.net.fc, v1.model.fc
    assert fc.weight.shape == (4, 2048)
    for i, name in enumerate(["apple", "checker", "cross", "ring"][1:], start=1):
        j = v1.labels.index(name)
        assert torch.equal(fc.weight[i], old.weight[j]) and torch.equal(fc.bias[i], old.bias[j])
    assert torch.equal(run.net.layer4[2].conv3.weight, v1.model.layer4[2].conv3.weight)
    assert _init_lines(logs) == [f"--init {published.repo_id}@v1 (commit {published.commit[:7]}): classes changed: "
                                 "3 head rows carried over by label name, new ['apple'] (fresh rows), "
                                 "reordered ['checker', 'cross', 'ring']"]
    # the new row is fresh: what a reset head gets from the same seed, and none of v1's rows
    reset_logs: list[str] = []
    reset = _setup(added, tmp_path / "r", f"{published.repo_id}@v1", reset_logs, init_head="reset")
    assert torch.equal(fc.weight[0], reset.net.fc.weight[0])
    assert not any(torch.equal(fc.weight[0], row) for row in old.weight)
    assert not torch.equal(reset.net.fc.weight[1], old.weight[0])  # reset: no row carried over
    assert torch.equal(reset.net.conv1.weight, v1.model.conv1.weight)  # the backbone still is v1's
    assert "head reset (--init-head reset): 4 fresh rows" in _init_lines(reset_logs)[0]
    # one class dropped: its row goes, the others move up
    dropped = shutil.copytree(published.data, tmp_path / "dropped", ignore=shutil.ignore_patterns("checker"))
    logs = []
    run = _setup(dropped, tmp_path / "d", f"{published.repo_id}@v1", logs)
    assert torch.equal(run.net.fc.weight, old.weight[1:]) and torch.equal(run.net.fc.bias, old.bias[1:])
    assert "dropped ['checker'], reordered ['cross', 'ring']" in _init_lines(logs)[0]


def test_readme_retrain_pushes_v2_with_lineage(published, hub_token, tmp_path, capsys):
    out = tmp_path / "v2"
    argv = ["--data", str(published.data), "--init", f"{published.repo_id}@v1", "--push-to", published.repo_id,
            "--tag", "auto", "--test-data", str(published.test), "--out", str(out), *QUICK_ARGS]
    assert main(argv) == 0, capsys.readouterr().err
    stdout = capsys.readouterr().out
    assert "tagged v2" in stdout and "same 3 classes: head kept" in stdout
    repo = published.repo_id
    train_config = json.loads(Path(hf_hub_download(repo, "train_config.json", revision="v2")).read_text())
    parent = train_config["parent"]
    assert (parent["repo_id"], parent["revision"], parent["commit"]) == (repo, "v1", published.commit)
    assert parent["labels"] == ["checker", "cross", "ring"] and parent["head_mode"] == "keep"
    config = json.loads(Path(hf_hub_download(repo, "config.json", revision="v2")).read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]  # v1's size: no --img-size given
    # the parent measured on v2's test data, through its own preprocessing
    metrics = json.loads(Path(hf_hub_download(repo, "metrics.json", revision="v2")).read_text())
    v1 = from_pretrained(repo, revision="v1", device="cpu")
    images = sorted(published.test.glob("*/*.png"))
    predicted = v1.logits(images).argmax(1).tolist()
    truth = [v1.labels.index(p.parent.name) for p in images]
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / len(images)
    assert metrics["parent_test"]["accuracy"] == pytest.approx(accuracy) and metrics["parent_test"]["n"] == 12
    # the card: base_model links v2 to v1 in the Hub's model tree; parent commit and both rows of metrics
    card = ModelCard.load(hf_hub_download(repo, "README.md", revision="v2"))
    assert card.data.base_model == repo
    assert published.commit in card.text and f"retrained from `{repo}@v1`" in card.text
    rows = [line for line in card.text.splitlines() if line.startswith(("| `" + repo + "@v1` (parent)", "| `v2`"))]
    assert len(rows) == 2, rows
    for row, m in zip(rows, (metrics["parent_test"], metrics["test"])):  # accuracy with its bootstrap interval
        ci = m["intervals"]["accuracy"]
        assert f"| {m['accuracy']:.4f} (95% CI {ci['low']:.3f}-{ci['high']:.3f}) |" in row
    assert "| `v1` (parent) |" in card.text  # the earlier-revisions table marks the parent


def test_retrain_from_a_commit_hash(published, hub_token, tmp_path):
    cfg = build_config("her2", data=str(published.data), out=str(tmp_path / "m"),
                       init=f"{published.repo_id}@{published.commit}", **QUICK)
    out = fit(cfg, log=lambda line: None, progress=False)
    parent = json.loads((out / "train_config.json").read_text())["parent"]
    assert parent["revision"] == parent["commit"] == published.commit
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == published.repo_id and published.commit in card.text
    assert "parent_test" not in json.loads((out / "metrics.json").read_text())  # no --test-data, no comparison


def test_offline_retrain_from_the_cache(published, hub_token, tmp_path):
    expected = from_pretrained(published.repo_id, revision="v1").commit  # v1 is in the cache now
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    out = tmp_path / "offline"
    cmd = [sys.executable, "-m", "train", "--data", str(published.data), "--init", f"{published.repo_id}@v1",
           "--out", str(out), *QUICK_ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    parent = json.loads((out / "train_config.json").read_text())["parent"]
    assert parent["commit"] == expected == published.commit
    # a revision that was never downloaded cannot come from the cache: one line, nothing written
    cmd[cmd.index("--init") + 1] = f"{published.repo_id}@v7"
    cmd[cmd.index("--out") + 1] = str(tmp_path / "never")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 2 and "not in the local cache" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "never").exists()


def _private(published, api: HfApi, monkeypatch) -> str:
    repo_id = f"{published.repo_id}-private-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id, private=True)
    api.upload_folder(folder_path=str(published.folder), repo_id=repo_id, allow_patterns=["*.json", "*.safetensors"])
    monkeypatch.delenv("HF_TOKEN")
    return f"{repo_id}@main"


def test_private_parent_with_a_token(published, hub_token, tmp_path, monkeypatch):
    init = _private(published, HfApi(), monkeypatch)  # ends with HF_TOKEN unset
    with pytest.raises(WeightsError, match="or it is private and no valid token was given"):
        _setup(published.data, tmp_path / "no-token", init, [])
    assert not (tmp_path / "no-token").exists()
    monkeypatch.setenv("HF_TOKEN", hub_token)
    logs: list[str] = []
    run = _setup(published.data, tmp_path / "token", init, logs)
    assert run.lineage["repo_id"] == init.split("@")[0] and "same 3 classes: head kept" in _init_lines(logs)[0]


def _pickle_only(published, api: HfApi, monkeypatch) -> str:
    repo_id = f"{published.repo_id}-pickle-{uuid.uuid4().hex[:6]}"
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=(published.folder / "config.json").read_bytes(), path_in_repo="config.json",
                    repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"\x80\x04 a pickle never opened", path_in_repo="pytorch_model.bin",
                    repo_id=repo_id)
    return repo_id


def _resnet18(published, api: HfApi, monkeypatch) -> str:
    repo_id = f"{published.repo_id}-r18-{uuid.uuid4().hex[:6]}"
    folder = random_model_folder(published.folder.parent / repo_id.split("/")[1], size=32, arch="resnet18",
                                 labels=["checker", "cross", "ring"])
    api.create_repo(repo_id)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    return f"{repo_id}@main"


BAD_PARENTS = {
    "repo that does not exist": (lambda p, api, mp: "testorg/no-such-parent", [],
                                 "--init testorg/no-such-parent: testorg/no-such-parent: repository not found"),
    "revision that does not exist": (lambda p, api, mp: f"{p.repo_id}@v99", [], "revision 'v99' not found"),
    "private parent without a token": (_private, [], "or it is private and no valid token was given: set HF_TOKEN"),
    "parent with only pickle weights": (_pickle_only, [], "pickled weights are never loaded"),
    "parent of another architecture": (_resnet18, [], "the parent is a resnet18 but this run trains a resnet50 "
                                                      "(--arch); retrain from a resnet50 model, or pass --arch "
                                                      "resnet18"),
    "--init-head unknown": (lambda p, api, mp: f"{p.repo_id}@v1", ["--init-head", "fresh"],
                            "--init-head must be 'keep' (carry the head over by label name) or 'reset'"),
}


@pytest.mark.parametrize("name", list(BAD_PARENTS))
def test_bad_parent_is_one_line_and_writes_nothing(name, published, hub_token, tmp_path, monkeypatch, capsys):
    make, extra, message = BAD_PARENTS[name]
    init = make(published, HfApi(), monkeypatch)
    out = tmp_path / "out"
    capsys.readouterr()
    try:
        code = main(["--data", str(published.data), "--init", init, *extra, "--out", str(out), *QUICK_ARGS])
    except SystemExit as exc:  # option errors end in argparse, as every other bad option
        code = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error: " in line]
    assert code == 2 and len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err and hub_token not in err
    assert not out.exists()


def test_a_retrain_into_the_same_folder_publishes_no_file_of_the_old_model(published, hub_server, hub_token,
                                                                           tmp_path):
    import time

    from hub.model import EXPLANATIONS, model_files

    out = tmp_path / "model"
    shutil.copytree(published.folder, out)
    (out / EXPLANATIONS).write_bytes((out / "plots" / "roc.png").read_bytes())   # `hub explain` of the old weights
    (out / "examples").mkdir()
    shutil.copy(_batch(published.data, 1)[0], out / "examples" / "a.png")         # the user's sample: kept
    started = time.time()
    train_quiet(published.data, out, img_size=32, batch_size=8, epochs=1, seed=3)
    files = model_files(out)
    assert EXPLANATIONS not in files and "examples/a.png" in files
    stale = [f for f in files if not f.startswith("examples/") and (out / f).stat().st_mtime < started - 1]
    assert not stale, f"files of the old model left in the folder: {stale}"
    repo_id = f"testorg/retrain-into-{uuid.uuid4().hex[:8]}"
    push(out, repo_id, token=hub_token)
    remote = set(HfApi(endpoint=hub_server.url, token=hub_token).list_repo_files(repo_id))
    assert EXPLANATIONS not in remote and set(files) <= remote
