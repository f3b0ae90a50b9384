"""torchrun with 2 CPU processes (gloo) trains the same model as 1 process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.synthetic import make_dataset

# resnet18: the DDP path (sampler, gradient all-reduce, metric reductions, rank-0 writes) does not depend on the
# architecture, and it halves the test's time (165 s -> 80 s on 2 busy cores) against resnet50.
ARGS = ["--arch", "resnet18", "--no-pretrained", "--unfreeze", "all", "--epochs", "6", "--img-size", "64",
        "--batch-size", "12", "--rotation", "0", "--color-jitter", "0", "--no-hflip", "--dropout", "0",
        "--patience", "0"]


ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, threads=None):
    # The two processes get one thread each. The single process keeps the thread count of the pytest process
    # that starts it: one under `make test` (conftest.py), where the other worker keeps one core busy. Given two
    # threads there, it took 44.5 s against 26.3 s with one (a one-thread matmul loop beside it standing in for
    # the other worker; 19.5 s with two threads on free cores): OpenMP threads spinning on a shared core.
    # (torchrun's torchelastic_* log folders go under TMPDIR, which conftest.py points at the run's temp folder.)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_processes_match_one_process(tmp_path):
    make_dataset(tmp_path / "train", classes=3, per_class=40, size=96, seed=1)
    make_dataset(tmp_path / "val", classes=3, per_class=10, size=96, seed=2)
    data = ["--data", str(tmp_path / "train"), "--val-data", str(tmp_path / "val")]
    _run([sys.executable, "-m", "train", *data, *ARGS, "--out", str(tmp_path / "one")])
    two = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train", *data, *ARGS,
                "--out", str(tmp_path / "two")], threads=1)
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


def test_gpus_get_a_group_with_both_backends_and_reductions_on_the_training_device(monkeypatch):
    """NCCL reduces only CUDA tensors: on GPUs the group is `cpu:gloo,cuda:nccl`, and `sum_all` hands
    `all_reduce` a tensor on the device it is given (checked here without a GPU: `meta` stands in for one)."""
    import torch
    import torch.distributed as dist

    from train.distributed import World, backend_for, sum_all

    assert backend_for(torch.device("cuda")) == "cpu:gloo,cuda:nccl"
    assert backend_for(torch.device("cuda", 1)) == "cpu:gloo,cuda:nccl"
    assert backend_for(torch.device("cpu")) == "gloo"  # NCCL refuses to start without a GPU
    seen = []

    def all_reduce(tensor, *args, **kwargs):
        seen.append(tensor.device)
        if tensor.device.type != "meta":
            tensor.mul_(2)  # as if a second rank held the same values

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    two = World(rank=0, size=2)
    assert sum_all([1.0, 2.5], two, torch.device("cpu")) == [2.0, 5.0]
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: [0.0])  # meta tensors hold no values to read back
    sum_all([1.0], two, torch.device("meta"))
    assert seen == [torch.device("cpu"), torch.device("meta")]
    assert sum_all([3.0], World(), torch.device("meta")) == [3.0]  # a world of one never reduces
    assert len(seen) == 2
