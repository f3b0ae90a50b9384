"""Images/s of our training step (train.engine.train_one_epoch) vs a bare PyTorch loop.

Both run the same timm ResNet50, batch, optimiser and in-memory data in the same process,
interleaved A/B several times so drift of the machine hits both equally; the ratio
ours / bare is the figure (goal >= 0.95: the engine adds no meaningful overhead).
A second figure times our full input pipeline (PNG decode + transforms through DataLoader).

    python -m bench.train_throughput                 # CPU defaults: 64 px, batch 16
    python -m bench.train_throughput --device cuda --amp --img-size 224 --batch-size 64
    python -m bench.train_throughput --compare-precision --img-size 128   # --amp vs fp32, same run

--compare-precision times our training step in fp32 against --amp (bf16 autocast + channels_last,
on GPUs and on CPUs with native bf16), interleaved the same way, and prints the speed ratio.

--compare-compile times our training step with the model eager (the baseline) and torch.compile'd (inductor), same
init, data and --amp, interleaved the same way; the compilation's own time is printed apart:
    python -m bench.train_throughput --compare-compile --amp --img-size 224 --batch-size 32 --output-stride 16

--compare-inputs times one training sample of each input path on one thread, as a DataLoader worker makes it:
the plain recipe transform (the baseline), --annotations (the region rides along), --context-swap 1 and
--counterfactual 1 (every sample swapped or hidden), on synthetic slices of --source-size px with their boxes:
    python -m bench.train_throughput --compare-inputs --source-size 512 --img-size 224
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from hub.device import pick_device
from hub.images import find_images
from train import engine


def bare_epoch(model, loader, criterion, optimizer, device, amp) -> None:
    """The minimal PyTorch loop: what anyone would write by hand."""
    model.train()
    fmt = engine.memory_format(device, amp)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True, memory_format=fmt), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with engine.amp_context(device, amp):
            loss = criterion(model(x).float(), y)
        loss.backward()
        optimizer.step()


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved(runs: dict, rounds: int, device) -> dict:
    """Seconds of each run per round, in an order drawn per round, so that a machine warming up or slowing down over
    a round favours none of them: {key: [seconds, ...]}."""
    times, order = {k: [] for k in runs}, random.Random(0)
    for _ in range(rounds):
        for key in sorted(runs, key=lambda _: order.random()):
            times[key].append(timed(runs[key], device))
    return times


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.train_throughput", description=__doc__.splitlines()[0])
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=6, help="optimiser steps per timed epoch")
    p.add_argument("--rounds", type=int, default=9, help="A/B rounds (median reported)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true", help="bf16/fp16 autocast + channels_last (GPU, bf16-native CPU)")
    p.add_argument("--compare-precision", action="store_true", help="fp32 vs --amp instead of engine vs bare")
    p.add_argument("--compare-compile", action="store_true", help="eager vs torch.compile, same step")
    p.add_argument("--output-stride", type=int, default=32, choices=(8, 16, 32),
                   help="--compare-compile: the last stage's stride (16: the guided MRI recipe's)")
    p.add_argument("--compare-inputs", action="store_true",
                   help="ms per training sample of each input path (plain, annotated, swapped, hidden)")
    p.add_argument("--source-size", type=int, default=512, help="--compare-inputs: the synthetic slices' size")
    a = p.parse_args(argv)
    if a.compare_precision:
        return compare_precision(a)
    if a.compare_inputs:
        return compare_inputs(a)
    if a.compare_compile:
        return compare_compile(a)
    import timm

    device = pick_device(a.device)
    torch.manual_seed(0)
    model = timm.create_model("resnet50", num_classes=3).to(device)
    if a.amp and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    n = a.batch_size * a.steps
    data = TensorDataset(torch.randn(n, 3, a.img_size, a.img_size), torch.randint(0, 3, (n,)))
    loader = DataLoader(data, batch_size=a.batch_size, shuffle=True, pin_memory=device.type == "cuda")
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    ours = lambda: engine.train_one_epoch(model, loader, criterion, optimizer, device, a.amp, show=False)  # noqa: E731
    bare = lambda: bare_epoch(model, loader, criterion, optimizer, device, a.amp)  # noqa: E731
    ours(), bare()  # warm-up: allocator, cuDNN autotune, lazy init
    t_ours, t_bare, ratios = [], [], []
    order = random.Random(0)
    for _ in range(a.rounds):
        # Which loop goes first is drawn per round: a machine warming up or slowing down over a
        # round then favours neither. The ratio of each round's pair is taken, then the median.
        if order.random() < 0.5:
            tb = timed(bare, device)
            to = timed(ours, device)
        else:
            to = timed(ours, device)
            tb = timed(bare, device)
        t_bare.append(tb)
        t_ours.append(to)
        ratios.append(tb / to)
    ips_ours, ips_bare = n / statistics.median(t_ours), n / statistics.median(t_bare)

    # Our whole input path: PNG files -> load_image -> transforms -> DataLoader, same model and step.
    from train.data import ImageDataset, Split, eval_data_config, train_transform
    from train.synthetic import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "d", classes=3, per_class=max(1, n // 3), size=a.img_size * 2, seed=0)
        paths = find_images(root)[:n]
        split = Split(tuple(paths), tuple(i % 3 for i in range(len(paths))))
        cfg = eval_data_config(model, a.img_size)
        ds = ImageDataset(split, train_transform(cfg, True, 20.0, 0.2))
        files = DataLoader(ds, batch_size=a.batch_size, shuffle=True)
        pipe = lambda: engine.train_one_epoch(model, files, criterion, optimizer, device, a.amp, show=False)  # noqa: E731
        pipe()
        ips_pipe = len(paths) / statistics.median(timed(pipe, device) for _ in range(a.rounds))

    print(f"device {device}  amp {a.amp}  resnet50 @ {a.img_size}px  batch {a.batch_size}  "
          f"{a.steps} steps x {a.rounds} rounds  torch threads {torch.get_num_threads()}")
    print(f"{'loop':<34}{'images/s':>10}{'ratio':>8}")
    print(f"{'bare PyTorch (baseline)':<34}{ips_bare:>10.1f}{1.0:>8.3f}")
    print(f"{'train.engine.train_one_epoch':<34}{ips_ours:>10.1f}{ips_ours / ips_bare:>8.3f}")
    print(f"{'  + our PNG input pipeline':<34}{ips_pipe:>10.1f}{ips_pipe / ips_bare:>8.3f}")
    print(f"per-round ratios engine/bare: {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio engine/bare = {statistics.median(ratios):.3f} (median of the rounds; goal >= 0.95)")


def compare_precision(a) -> None:
    """Images/s of train_one_epoch in fp32 and with --amp, same model init and data, A/B interleaved."""
    import timm

    from hub.device import autocast_dtype

    device = pick_device(a.device)
    n = a.batch_size * a.steps
    data = TensorDataset(torch.randn(n, 3, a.img_size, a.img_size), torch.randint(0, 3, (n,)))
    loader = DataLoader(data, batch_size=a.batch_size, shuffle=True)
    runs = {}
    for amp in (False, True):
        torch.manual_seed(0)
        model = timm.create_model("resnet50", num_classes=3).to(device, memory_format=engine.memory_format(device, amp))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        runs[amp] = (lambda m=model, o=optimizer, amp=amp:
                     engine.train_one_epoch(m, loader, torch.nn.CrossEntropyLoss(), o, device, amp, show=False))
        runs[amp]()  # warm-up: oneDNN/cuDNN pick their kernels on the first pass
    times = interleaved(runs, a.rounds, device)
    fp32, amp = (n / statistics.median(times[k]) for k in (False, True))
    print(f"device {device}  resnet50 @ {a.img_size}px  batch {a.batch_size}  {a.steps} steps x {a.rounds} rounds")
    print(f"fp32: {fp32:.1f} images/s   --amp ({autocast_dtype(device)}, channels_last): {amp:.1f} images/s")
    print(f"ratio amp / fp32 = {amp / fp32:.3f}")


def compare_compile(a) -> None:
    """Images/s of train_one_epoch with the model eager and torch.compile'd, same init and data, A/B interleaved."""
    import timm

    device = pick_device(a.device)
    n = a.batch_size * a.steps
    data = TensorDataset(torch.randn(n, 3, a.img_size, a.img_size), torch.randint(0, 3, (n,)))
    loader = DataLoader(data, batch_size=a.batch_size, shuffle=True)
    runs, first = {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = timm.create_model("resnet50", num_classes=3, output_stride=a.output_stride).to(
            device, memory_format=engine.memory_format(device, a.amp))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        net = torch.compile(model) if compiled else model
        runs[compiled] = (lambda m=net, o=optimizer:
                          engine.train_one_epoch(m, loader, torch.nn.CrossEntropyLoss(), o, device, a.amp, show=False))
        first[compiled] = timed(runs[compiled], device)   # warm-up; compiled: tracing and code generation too
    times = interleaved(runs, a.rounds, device)
    eager, compiled = (n / statistics.median(times[k]) for k in (False, True))
    print(f"device {device}  amp {a.amp}  resnet50 @ {a.img_size}px  output stride {a.output_stride}  "
          f"batch {a.batch_size}  {a.steps} steps x {a.rounds} rounds  torch threads {torch.get_num_threads()}")
    print(f"eager (baseline): {eager:.1f} images/s   torch.compile: {compiled:.1f} images/s   "
          f"compilation: {first[True] - first[False]:.0f} s beyond an eager first epoch")
    print(f"ratio compiled / eager = {compiled / eager:.3f}")


def compare_inputs(a) -> None:
    """Milliseconds per training sample of each input path, one thread, A/B/C/D interleaved over the rounds."""
    from hub.annotations import read_annotations
    from train.config import RECIPES
    from train.data import ImageDataset, Split, train_transform
    from train.grounding import GroundedDataset, joint_transform
    from train.synthetic import make_dataset

    torch.set_num_threads(1)                  # what a DataLoader worker runs with
    cfg = {"input_size": (3, a.img_size, a.img_size), "interpolation": "bicubic", "mean": (0.5,) * 3,
           "std": (0.5,) * 3}
    mri = RECIPES["mri"]                      # the recipe the grounded options are used with
    augment = (mri["hflip"], mri["rotation"], mri["color_jitter"], mri["scale_min"])
    joint = joint_transform(cfg, *augment)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(Path(tmp) / "d", classes=3, per_class=20, size=a.source_size, seed=0)
        paths = find_images(root)
        split = Split(tuple(paths), tuple(i % 3 for i in range(len(paths))))
        regions = read_annotations(root, paths, root)
        paths_of = {
            "plain (baseline)": ImageDataset(split, train_transform(cfg, *augment)),
            "--annotations": GroundedDataset(split, regions, joint),
            "--context-swap 1": GroundedDataset(split, regions, joint, context_swap=1.0),
            "--counterfactual 1": GroundedDataset(split, regions, joint, counterfactual=1.0),
        }
        every = {name: (lambda ds=ds: [ds[i] for i in range(len(ds))]) for name, ds in paths_of.items()}
        seconds = interleaved(every, a.rounds, torch.device("cpu"))
    times = {name: [t / len(split) * 1000 for t in ts] for name, ts in seconds.items()}
    base = statistics.median(times["plain (baseline)"])
    print(f"one thread; synthetic {a.source_size} px slices -> {a.img_size} px; "
          f"{len(paths)} samples x {a.rounds} rounds")
    print(f"{'input path':<24}{'ms/sample':>10}{'ratio':>8}")
    for name, ts in times.items():
        print(f"{name:<24}{statistics.median(ts):>10.1f}{statistics.median(ts) / base:>8.2f}")


if __name__ == "__main__":
    main()
