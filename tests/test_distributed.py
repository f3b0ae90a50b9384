"""torchrun with 2 CPU processes (gloo) trains the same model as 1 process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.synthetic import make_dataset

ARGS = ["--no-pretrained", "--unfreeze", "all", "--epochs", "6", "--img-size", "64", "--batch-size", "12",
        "--rotation", "0", "--color-jitter", "0", "--no-hflip", "--dropout", "0", "--patience", "0"]


ROOT = Path(__file__).resolve().parents[1]


def _run(cmd):
    # one thread per process: two processes on two cores, no oversubscription
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_processes_match_one_process(tmp_path):
    make_dataset(tmp_path / "train", classes=3, per_class=40, size=96, seed=1)
    make_dataset(tmp_path / "val", classes=3, per_class=10, size=96, seed=2)
    data = ["--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val")]
    _run([sys.executable, "-m", "train", *data, *ARGS, "--out", str(tmp_path / "one")])
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train", *data, *ARGS,
                "--out", str(tmp_path / "two")])
    assert two.stdout.count("epoch   6/6") == 1  # only rank 0 logs
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())["validation"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())["validation"]
    assert m2["n"] == m1["n"] == 30  # every validation image evaluated once, gathered from both ranks
    assert m1["accuracy"] > 0.6 and m2["accuracy"] > 0.6
    # Same images per global step; only BatchNorm statistics (per process) and float order differ.
    assert m2["accuracy"] == pytest.approx(m1["accuracy"], abs=0.1)
    assert m2["auc_macro"] == pytest.approx(m1["auc_macro"], abs=0.05)
    run = json.loads((tmp_path / "two" / "train_config.json").read_text())["run"]
    assert run["processes"] == 2
    assert not list((tmp_path / "two").glob("*.tmp*"))  # a single writer: no stray files
