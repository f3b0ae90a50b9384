"""Benchmark the explanation engine against pytorch-grad-cam, on one model and the same images.

    python -m bench.explain                          # real MRI images, random-init ResNet50
    python -m bench.explain --model-dir MODEL_DIR    # a trained timm model folder (say which!)
    python -m bench.explain --quick                  # one image, 128 px, smoke test
    python -m bench.explain --faithfulness           # cost of the faithfulness figures of one map

Every method runs in its own subprocess (peak RSS = ru_maxrss of that process after loading,
"+MB" = above the RSS with the model and images loaded) on the same model,
images, sizes and thread count. Rows: pytorch-grad-cam ScoreCAM (its default batch size 16,
fp32); our exact Score-CAM (bf16 autocast where the CPU supports it); our fast Score-CAM (k
clustered channels, the API's default dtype); random_k, the best simple subset rule (k
random channels, softmax over those only); the free baseline (mean of the activation maps, no
masked pass); Grad-CAM (ours and the library's); the forward floor (as many plain batched
forward passes as our exact mode ran, same batch size, dtype and memory format; a share is timed
and scaled) and one plain fp32 forward. Where the library's full Score-CAM would take too long
(sizes above --library-full-max), its own `get_cam_weights` runs on a fixed share of the
channels and the time is extrapolated; the output says so, and r against the library is then
only available at the smaller sizes. r is Pearson's over the maps resized to the input size.

With --faithfulness only the cost of `hub.explain.faithfulness` is measured, per image and size:
"curves" is both curves (deletion and insertion, `--steps`) of one map, "figures" everything an
Explanation carries (the map's and both baselines' curves, keep-remove of all three), in fp32 and
in the curves' default precision (bf16 on bf16-native CPUs), against one plain fp32 forward.

How fast mode picks its k passes (measured before choosing; ResNet50 briefly trained on the
MRI set, 9 held-out images at 128 px, every channel's exact score stored, 10 seeds each;
mean / worst r against exact Score-CAM):

    rule                                   k=16            k=32            k=64
    top-k by activation mean               0.51 / -0.56    0.52 / -0.61    0.59 / -0.55
    top-k by activation variance           0.69 /  0.49    0.73 /  0.61    0.78 /  0.61
    random k, softmax over them            0.79 / -0.10    0.88 /  0.56    0.95 /  0.79
    random k + uniform control variate     0.95 /  0.72    0.97 /  0.77    0.99 /  0.93
    k-means of the masks, nearest member   0.993 / 0.93    0.997 / 0.978   0.998 / 0.993
    free baseline (mean activation map)    0.86 / 0.77 (no passes)

The last rule is FastScoreCAM: channels whose masks look alike get alike scores, so one pass
per cluster of masks, shared by its members, keeps nearly all of Score-CAM's weighting.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hub.explain.cam import FAST_CHANNELS
from hub.images import find_images

# The real MRI slices sit beside the repository (never copied into it); --data or $EXPLAIN_BENCH_DATA overrides.
DEFAULT_DATA = os.environ.get("EXPLAIN_BENCH_DATA") or str(
    Path(__file__).resolve().parents[2] / "shared" / "data" / "brain-mri-figshare" / "train")
METHODS = ("library_scorecam", "exact", "fast", "random_k", "baseline", "gradcam", "library_gradcam", "floor",
           "forward")
# pytorch-grad-cam's x * mask: our Score-CAMs run with the library's fill here, so that their maps compare with
# its map (the project's default fill, "blur", changes what the masked passes see; see hub/explain/cam.py).
LIBRARY_FILL = "constant"
FAITHFULNESS = ("forward", "curves_fp32", "curves", "figures_fp32", "figures")


# ----------------------------------------------------------------------------- worker side

def _load_model(model_dir: str | None, classes: int):
    """The trained model folder, or a seeded random-init ResNet50 with the project's config."""
    import timm
    import torch

    if model_dir:
        return timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=classes)
    model.pretrained_cfg = {**model.pretrained_cfg, "crop_pct": 1.0, "crop_mode": "squash",
                            "label_names": [str(i) for i in range(classes)]}
    return model.eval()


def _inputs(model, paths: list[str], size: int):
    """Images through the model's own preprocessing, with the input size set to `size`."""
    import timm

    from hub.images import load_image

    cfg = timm.data.resolve_model_data_config(model)
    cfg["input_size"] = (3, size, size)
    transform = timm.data.create_transform(**cfg)
    return [transform(load_image(p))[None] for p in paths]


def _rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _restart_peak_rss() -> float:
    """Restart the peak-RSS counter at the current RSS (Linux clear_refs), so loading the model
    does not count as the method's peak; returns the RSS it restarts from, in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux or not allowed: the peak then includes loading
    return _rss_mb()


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _library_scorecam(model, x, share: float):
    """pytorch-grad-cam ScoreCAM; below share 1, its own weight step on the first channels only."""
    from pytorch_grad_cam import ScoreCAM as LibraryScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with LibraryScoreCAM(model, [model.get_submodule(_layer(model))]) as cam:
        if share >= 1.0:
            seconds, heat = _timed(lambda: cam(x, None)[0])
            return seconds, heat.tolist(), None
        start = time.perf_counter()
        logits = cam.activations_and_grads(x)          # the library's own base pass
        acts = cam.activations_and_grads.activations[0].numpy()
        targets = [ClassifierOutputTarget(int(logits[0].argmax()))]
        base = time.perf_counter() - start
        m = max(1, int(round(acts.shape[1] * share)))
        part, _ = _timed(lambda: cam.get_cam_weights(x, None, targets, acts[:, :m], None))
        return base + part * acts.shape[1] / m, None, m


def _layer(model) -> str:
    from hub.explain.split import feature_layer_name

    return feature_layer_name(model)


def _random_subset(model, x, k: int, dtype):
    """The best simple subset rule, for comparison: k random channels, softmax over them only."""
    import torch

    from hub.explain.cam import MASK_EPS, ScoreCAM, normalise

    cam = ScoreCAM(model, dtype=dtype, fill=LIBRARY_FILL)
    with torch.inference_mode():
        acts, logits, _ = cam.split.run(x)
        maps = acts[0].float()
        lo = maps.amin(dim=(1, 2), keepdim=True)
        span = maps.amax(dim=(1, 2), keepdim=True) - lo
        varying = (span.flatten() >= MASK_EPS).nonzero().flatten()
        pick = varying[torch.randperm(varying.numel(), generator=torch.Generator().manual_seed(0))[:k]]
        scores, _ = cam.masked_scores(x, (maps[pick] - lo[pick]) / (span[pick] + MASK_EPS), int(logits.argmax()), False)
        heat = normalise(torch.relu(torch.einsum("c,chw->hw", torch.softmax(scores, 0), maps[pick])))
    return heat.tolist(), int(pick.numel())


def _floor(model, x, passes: int, batch: int, dtype, cap: int):
    """Plain batched forwards: min(passes, cap) timed, scaled to `passes`."""
    import torch

    from hub.device import autocast

    run = max(1, min(passes, cap))
    xb = x.expand(batch, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(x.device, dtype):
        model(xb[:2])  # warm-up: first-call primitive creation is not part of the floor
        start = time.perf_counter()
        done, total = 0, 0.0
        while done < run:
            n = min(batch, run - done)
            total = total + model(xb[:n])[:, 0].float().sum()  # stays on the device, like ours
            done += n
        float(total)  # one host sync at the end
    return (time.perf_counter() - start) * passes / run


def _faithfulness(model, x, worker: str, steps: int) -> float:
    """Seconds for both curves of one Grad-CAM map ("curves") or all the figures ("figures")."""
    from hub.device import autocast_dtype
    from hub.explain.cam import GradCAM
    from hub.explain.explanation import to_pixels
    from hub.explain.faithfulness import curves, measure

    size = tuple(x.shape[-2:])
    heat = to_pixels(GradCAM(model)(x).cam, size, size, False)
    dtype = None if worker.endswith("_fp32") else autocast_dtype(x.device)
    run = (lambda: curves(model, x, {"map": heat}, 0, steps=steps, dtype=dtype)) if worker.startswith("curves") \
        else (lambda: measure(model, x, heat, 0, steps=steps, dtype=dtype))
    run()  # warm-up: the first batched pass at a new batch size creates its kernels
    return _timed(run)[0]


def worker(a) -> dict:
    """Run one method at one size on every image; print a JSON line."""
    import torch

    from hub.explain.cam import FastScoreCAM, GradCAM, ScoreCAM, auto_batch_size, normalise, resolve_dtype

    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model = _load_model(a.model_dir, a.classes).to(device)
    xs = [x.to(device) for x in _inputs(model, json.loads(Path(a.paths).read_text()), a.size)]
    dtype = resolve_dtype(device, a.dtype, reduced_on_cpu=False)  # as ScoreCAM resolves it
    with torch.inference_mode():  # warm-up so every method starts from the same state
        model(xs[0])
    loaded = _restart_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        extra_gpu = torch.cuda.memory_allocated(device)
    times, cams, passes, extra = [], [], [], {}
    for x in xs:
        if a.worker == "library_scorecam":
            sec, cam, used = _library_scorecam(model, x, a.library_share)
            extra["library_channels"] = used
        elif a.worker in ("exact", "fast"):
            cam_fn = ScoreCAM(model, dtype=a.dtype, fill=LIBRARY_FILL) if a.worker == "exact" else \
                FastScoreCAM(model, a.k, dtype=a.fast_dtype, fill=LIBRARY_FILL)
            sec, res = _timed(lambda: cam_fn(x))
            cam, used = res.cam.tolist(), res.passes
            passes.append(used)
        elif a.worker == "random_k":
            sec, res = _timed(lambda: _random_subset(model, x, a.k, a.fast_dtype))
            cam, used = res
            passes.append(used)
        elif a.worker == "baseline":
            split = ScoreCAM(model).split

            def mean_map():
                with torch.inference_mode():
                    acts, _, _ = split.run(x)
                    return normalise(torch.relu(acts[0].float().mean(0)))
            sec, res = _timed(mean_map)
            cam = res.tolist()
        elif a.worker == "gradcam":
            sec, res = _timed(lambda: GradCAM(model)(x))
            cam = res.cam.tolist()
        elif a.worker == "library_gradcam":
            from pytorch_grad_cam import GradCAM as LibraryGradCAM

            with LibraryGradCAM(model, [model.get_submodule(_layer(model))]) as lib:
                sec, heat = _timed(lambda: lib(x, None)[0])
            cam = heat.tolist()
        elif a.worker == "floor":
            batch = auto_batch_size(x, dtype, limit=a.passes)
            sec, cam = _floor(model, x, a.passes, batch, dtype, a.floor_cap), None
            extra["floor_batch"], extra["floor_timed"] = batch, min(a.passes, a.floor_cap)
        elif a.worker.startswith(("curves", "figures")):
            sec, cam = _faithfulness(model, x, a.worker, a.steps), None
        elif a.worker == "forward":
            with torch.inference_mode():
                sec, _ = _timed(lambda: model(x).float().cpu())  # to the host: waits for a GPU
            cam = None
        else:
            raise ValueError(a.worker)
        times.append(sec)
        cams.append(cam)
    if device.type == "cuda":  # device memory is the one that matters there
        extra["gpu_peak_mb"] = (torch.cuda.max_memory_allocated(device) - extra_gpu) / 2**20
    return {"method": a.worker, "size": a.size, "times": times, "cams": cams, "passes": passes,
            "rss_peak_mb": _rss_mb(), "rss_loaded_mb": loaded, **extra}


# ----------------------------------------------------------------------------- parent side

def pick_images(data: str, n: int) -> list[str]:
    """n images spread over the classes, from the last 20% of each class's sorted file numbers
    (the block a contiguous validation split holds out), evenly spaced."""
    root = Path(data)
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [sorted(find_images(c), key=lambda f: (len(f.stem), f.stem)) for c in classes]
    held = [files[int(len(files) * 0.8):] for files in per_class]
    picks = []
    for i in range(n):
        files = held[i % len(held)]
        j = i // len(held)
        slots = (n + len(held) - 1) // len(held)
        picks.append(str(files[int((j + 0.5) * len(files) / slots)]))
    return picks


def to_input(cam, size: int) -> np.ndarray:
    """A low-res map resized like the library resizes (bilinear, half-pixel); S x S maps as is."""
    import torch
    import torch.nn.functional as F

    t = torch.tensor(cam, dtype=torch.float32)
    if t.shape[-1] == size:
        return t.numpy()
    return F.interpolate(t[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two maps; NaN when either is flat."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def run_worker(a, method: str, size: int, paths_file: str, share: float, passes: int = 0) -> dict:
    """Run one method at one size in a fresh subprocess; its JSON result."""
    cmd = [sys.executable, "-m", "bench.explain", "--worker", method, "--size", str(size),
           "--paths", paths_file, "--library-share", str(share), "--passes", str(passes),
           "--k", str(a.k), "--dtype", a.dtype, "--fast-dtype", a.fast_dtype, "--classes", str(a.classes),
           "--floor-cap", str(a.floor_cap), "--device", a.device, "--steps", str(a.steps)]
    if a.model_dir:
        cmd += ["--model-dir", a.model_dir]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    # Passive OpenMP waiting: on a shared, busy CPU, spinning threads wait for each other's time
    # slices and every method runs several times slower (measured 4x for ResNet50 batches).
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"{method} at {size}px failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SCORE_CAMS = ("exact", "fast", "random_k", "baseline")  # compared with the library's ScoreCAM


def mean_r(res: dict, method: str, ref: str, size: int) -> float:
    """Mean Pearson r of `method`'s maps against `ref`'s, image by image (NaN where one has none)."""
    pairs = list(zip(res[method]["cams"], res[ref]["cams"]))
    if not pairs or any(c is None or r is None for c, r in pairs):
        return float("nan")
    return float(np.mean([pearson(to_input(c, size), to_input(r, size)) for c, r in pairs]))


def report(size: int, res: dict, a) -> list[str]:
    """The table and ratios for one size."""
    med = {m: statistics.median(r["times"]) for m, r in res.items()}
    fmt = lambda v: "-" if v != v else f"{v:.4f}"  # noqa: E731 (NaN prints as "-")
    lines = [f"\n== {size} px, {len(res['exact']['times'])} images, median seconds per image ==",
             f"{'method':<18}{'s/img':>9}{'passes':>8}{'x floor':>9}{'lib/this':>10}{'r vs lib':>10}"
             f"{'r vs exact':>12}{'peak MB':>9}{'+MB':>7}"]
    for m in METHODS:
        r = res[m]
        passes = f"{statistics.median(r['passes']):.0f}" if r["passes"] else ""
        floor = f"{med[m] / med['floor']:.2f}" if m == "exact" else ""
        lib = {"gradcam": "library_gradcam"}.get(m, "library_scorecam" if m in SCORE_CAMS else None)
        speed = f"{med[lib] / med[m]:.1f}x" if lib else ""
        r_lib = mean_r(res, m, lib, size) if lib else float("nan")
        r_exact = mean_r(res, m, "exact", size) if m in SCORE_CAMS + ("library_scorecam",) and m != "exact" \
            else float("nan")
        lines.append(f"{m:<18}{med[m]:>9.3f}{passes:>8}{floor:>9}{speed:>10}{fmt(r_lib):>10}{fmt(r_exact):>12}"
                     f"{r['rss_peak_mb']:>9.0f}{r['rss_peak_mb'] - r['rss_loaded_mb']:>7.0f}")
    share = res["library_scorecam"].get("library_channels")
    if share:
        lines.append(f"  library ScoreCAM: its own weight step timed on {share} channels and extrapolated to all "
                     f"(no library map at this size; its peak MB is that of the share)")
    if "gpu_peak_mb" in res["exact"]:
        lines.append("  GPU peak MB above the loaded model: " + ", ".join(
            f"{m} {r['gpu_peak_mb']:.0f}" for m, r in res.items() if "gpu_peak_mb" in r))
    fl, n = res["floor"], passes_of(res)
    lines.append(f"  floor: {fl['floor_timed']} of {n} plain forwards timed (batch {fl['floor_batch']}, "
                 f"dtype {a.dtype}, channels_last), scaled to {n}")
    per_image = ", ".join(f"{pearson(to_input(f, size), to_input(e, size)):.3f}"
                          for f, e in zip(res["fast"]["cams"], res["exact"]["cams"]))
    lines += [f"  exact / floor = {med['exact'] / med['floor']:.2f}   library / exact = "
              f"{med['library_scorecam'] / med['exact']:.2f}x",
              f"  fast (k={a.k}): {med['fast']:.2f} s, r vs exact {fmt(mean_r(res, 'fast', 'exact', size))} "
              f"(per image {per_image});  random k: {fmt(mean_r(res, 'random_k', 'exact', size))};  "
              f"free baseline: {fmt(mean_r(res, 'baseline', 'exact', size))}",
              f"  Grad-CAM / one fp32 forward = {med['gradcam'] / med['forward']:.2f}   "
              f"library Grad-CAM / ours = {med['library_gradcam'] / med['gradcam']:.2f}x"]
    return lines


def faithfulness_report(size: int, res: dict, a) -> list[str]:
    """Median seconds per image of each faithfulness worker, and as plain forwards."""
    forward = statistics.median(res["forward"]["times"])
    lines = [f"\n== faithfulness, {size} px, {len(res['forward']['times'])} images, steps {a.steps}, "
             "median seconds per image ==", f"{'what':<14}{'s/img':>9}{'x forward':>11}"]
    for m in FAITHFULNESS:
        sec = statistics.median(res[m]["times"])
        lines.append(f"{m:<14}{sec:>9.3f}{sec / forward:>11.1f}")
    return lines


def passes_of(res: dict) -> int:
    """Median masked passes of our exact Score-CAM: the floor runs as many plain forwards."""
    return int(statistics.median(res["exact"]["passes"]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", help="trained timm model folder (default: random-init resnet50)")
    p.add_argument("--data", default=DEFAULT_DATA, help="class-per-folder images (read in place)")
    p.add_argument("--images", type=int, default=3, help="images per size")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 128], help="input sizes in pixels")
    p.add_argument("--k", type=int, default=FAST_CHANNELS, help="fast mode: masked passes")
    p.add_argument("--dtype", default=None, help="our Score-CAM autocast dtype (default: bfloat16 "
                   "where the CPU supports it, else float32; auto on CUDA)")
    p.add_argument("--fast-dtype", default="auto", help="fast mode's dtype (auto: the API default, "
                   "fp32 on CPU, bf16/fp16 on CUDA)")
    p.add_argument("--library-full-max", type=int, default=128,
                   help="largest size at which the library's Score-CAM runs in full")
    p.add_argument("--library-share", type=float, default=0.125,
                   help="share of channels timed for the library above --library-full-max")
    p.add_argument("--floor-cap", type=int, default=256, help="forward passes timed for the floor")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU peak memory is then reported too)")
    p.add_argument("--quick", action="store_true", help="1 image at 128 px, library share 1/16")
    p.add_argument("--faithfulness", action="store_true", help="only the cost of the faithfulness figures")
    p.add_argument("--steps", type=int, default=10, help="steps of the deletion and insertion curves")
    p.add_argument("--classes", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=METHODS + FAITHFULNESS[1:], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--paths", help=argparse.SUPPRESS)
    p.add_argument("--passes", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.dtype is None:
        from hub.device import cpu_supports_bf16

        a.dtype = "bfloat16" if a.device == "cpu" and cpu_supports_bf16() else "auto"
    if a.worker:
        print(json.dumps(worker(a)))
        return
    if a.quick:
        a.images, a.sizes, a.library_full_max, a.library_share = 1, [128], 0, 1 / 16
    import torch

    threads = a.threads or torch.get_num_threads()
    if not Path(a.data).is_dir():
        raise SystemExit(f"{a.data}: no such folder of class-per-folder images; pass --data DIR")
    paths = pick_images(a.data, a.images)
    model_note = f"trained model {a.model_dir}" if a.model_dir else \
        "RANDOM-INIT resnet50 (seed 0): speed is representative, fast-mode r is not"
    print(f"model: {model_note}\nimages: {len(paths)} from {a.data}\n"
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')} for every worker\n"
          f"torch {torch.__version__}, {threads} threads, exact dtype {a.dtype}, fast k={a.k} dtype {a.fast_dtype}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(paths, f)
    start = time.perf_counter()
    try:
        if a.faithfulness:
            for size in a.sizes:
                res = {m: run_worker(a, m, size, f.name, 1.0) for m in FAITHFULNESS}
                print("\n".join(faithfulness_report(size, res, a)), flush=True)
            return
        for size in a.sizes:
            share = 1.0 if size <= a.library_full_max else a.library_share
            res = {m: run_worker(a, m, size, f.name, share) for m in METHODS if m != "floor"}
            res["floor"] = run_worker(a, "floor", size, f.name, share, passes=passes_of(res))
            print("\n".join(report(size, res, a)), flush=True)
    finally:
        os.unlink(f.name)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
