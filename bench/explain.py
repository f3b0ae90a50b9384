"""Benchmark the explanation engine against pytorch-grad-cam, on one model and the same images.

    python -m bench.explain                          # real MRI images, random-init ResNet50
    python -m bench.explain --model-dir MODEL_DIR    # a trained timm model folder (say which!)
    python -m bench.explain --quick                  # one image, 128 px, smoke test

Every method runs in its own subprocess (peak RSS = ru_maxrss of that process) on the same model,
images, sizes and thread count. Rows: pytorch-grad-cam ScoreCAM (its default batch size 16,
fp32), our exact Score-CAM (bf16 autocast where the CPU supports it), our fast Score-CAM (k
random channels), the free baseline (mean of the activation maps, no masked pass), Grad-CAM
(ours and the library's), the forward floor (as many plain batched forward passes as our exact
mode ran, same batch size, dtype and memory format) and one plain fp32 forward. Where the
library's full Score-CAM would take too long (sizes above --library-full-max), its own
`get_cam_weights` runs on a fixed share of the channels and the time is extrapolated; the
output says so, and r against the library is then only available at the smaller sizes.
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

from hub.cam import FAST_CHANNELS

DEFAULT_DATA = "/work/shared/data/brain-mri-figshare/train"
METHODS = ("library_scorecam", "exact", "fast", "baseline", "gradcam", "library_gradcam", "floor", "forward")


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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
    from hub.split import feature_layer_name

    return feature_layer_name(model)


def _floor(model, x, passes: int, batch: int, dtype, cap: int):
    """Plain batched forwards: min(passes, cap) timed, scaled to `passes`."""
    import torch

    from hub.cam import _autocast

    run = max(1, min(passes, cap))
    xb = x.expand(batch, -1, -1, -1).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), _autocast(x.device, dtype):
        model(xb[:2])  # warm-up: first-call primitive creation is not part of the floor
        start = time.perf_counter()
        done = 0
        while done < run:
            n = min(batch, run - done)
            model(xb[:n])[:, 0].float().sum().item()
            done += n
    return (time.perf_counter() - start) * passes / run


def worker(a) -> dict:
    """Run one method at one size on every image; print a JSON line."""
    import torch

    from hub.cam import FastScoreCAM, GradCAM, ScoreCAM, auto_batch_size, normalise, resolve_dtype

    if a.threads:
        torch.set_num_threads(a.threads)
    model = _load_model(a.model_dir, a.classes)
    xs = _inputs(model, json.loads(Path(a.paths).read_text()), a.size)
    dtype = resolve_dtype(xs[0].device, a.dtype)
    with torch.inference_mode():  # warm-up so every method starts from the same state
        model(xs[0])
    loaded = _rss_mb()
    times, cams, passes, extra = [], [], [], {}
    for x in xs:
        if a.worker == "library_scorecam":
            sec, cam, used = _library_scorecam(model, x, a.library_share)
            extra["library_channels"] = used
        elif a.worker in ("exact", "fast"):
            cam_fn = ScoreCAM(model, dtype=a.dtype) if a.worker == "exact" else \
                FastScoreCAM(model, a.k, dtype=a.fast_dtype)
            sec, res = _timed(lambda: cam_fn(x))
            cam, used = res.cam.tolist(), res.passes
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
        elif a.worker == "forward":
            with torch.inference_mode():
                sec, _ = _timed(lambda: model(x))
            cam = None
        else:
            raise ValueError(a.worker)
        times.append(sec)
        cams.append(cam)
    return {"method": a.worker, "size": a.size, "times": times, "cams": cams, "passes": passes,
            "rss_peak_mb": _rss_mb(), "rss_loaded_mb": loaded, **extra}


# ----------------------------------------------------------------------------- parent side

def pick_images(data: str, n: int) -> list[str]:
    """n images spread over the classes, from the last 20% of each class's sorted file numbers
    (the block a contiguous validation split holds out), evenly spaced."""
    root = Path(data)
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    per_class = [sorted(c.iterdir(), key=lambda f: (len(f.stem), f.stem)) for c in classes]
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
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def run_worker(a, method: str, size: int, paths_file: str, share: float, passes: int = 0) -> dict:
    cmd = [sys.executable, "-m", "bench.explain", "--worker", method, "--size", str(size),
           "--paths", paths_file, "--library-share", str(share), "--passes", str(passes),
           "--k", str(a.k), "--dtype", a.dtype, "--fast-dtype", a.fast_dtype, "--classes", str(a.classes),
           "--floor-cap", str(a.floor_cap)]
    if a.model_dir:
        cmd += ["--model-dir", a.model_dir]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"{method} at {size}px failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(size: int, res: dict, a) -> list[str]:
    """The table and ratios for one size."""
    med = {m: statistics.median(r["times"]) for m, r in res.items()}
    lib_maps = res["library_scorecam"]["cams"]
    exact = [to_input(c, size) for c in res["exact"]["cams"]]

    def r_vs(method, ref):
        if ref is None or res[method]["cams"][0] is None:
            return float("nan")
        return float(np.mean([pearson(to_input(c, size), to_input(r, size)) for c, r in zip(res[method]["cams"], ref)]))

    lib_ref = lib_maps if lib_maps[0] is not None else None
    lines = [f"\n== {size} px, {len(exact)} images, median seconds per image ==",
             f"{'method':<18}{'s/img':>9}{'passes':>8}{'x floor':>9}{'lib/this':>10}{'r vs lib':>10}"
             f"{'r vs exact':>12}{'peak MB':>9}{'+MB':>7}"]
    for m in METHODS:
        r = res[m]
        passes = statistics.median(r["passes"]) if r["passes"] else ""
        floor = f"{med[m] / med['floor']:.2f}" if m in ("exact", "fast") else ""
        speed = f"{med['library_scorecam'] / med[m]:.1f}x" if m in ("exact", "fast", "baseline") else \
            (f"{med['library_gradcam'] / med[m]:.2f}x" if m == "gradcam" else "")
        rl = r_vs(m, lib_ref) if m in ("exact", "fast", "baseline") else \
            (r_vs("gradcam", res["library_gradcam"]["cams"]) if m == "gradcam" else float("nan"))
        re_ = r_vs(m, res["exact"]["cams"]) if m in ("fast", "baseline", "library_scorecam") else float("nan")
        fmt = lambda v: f"{v:.4f}" if v == v else "-"
        lines.append(f"{m:<18}{med[m]:>9.3f}{str(passes):>8}{floor:>9}{speed:>10}{fmt(rl):>10}{fmt(re_):>12}"
                     f"{r['rss_peak_mb']:>9.0f}{r['rss_peak_mb'] - r['rss_loaded_mb']:>7.0f}")
    lib = res["library_scorecam"]
    if lib.get("library_channels"):
        lines.append(f"  library ScoreCAM: timed on {lib['library_channels']} channels of its own weight step "
                     f"and extrapolated to all channels (no library map at this size)")
    fl = res["floor"]
    lines.append(f"  floor: {fl['floor_timed']} of {a_passes(res)} plain forwards timed (batch {fl['floor_batch']}, "
                 f"dtype {a.dtype}, channels_last), scaled to {a_passes(res)}")
    lines.append(f"  exact / floor = {med['exact'] / med['floor']:.2f}   library / exact = "
                 f"{med['library_scorecam'] / med['exact']:.2f}x   fast: {med['fast']:.2f} s, r vs exact "
                 f"{r_vs('fast', res['exact']['cams']):.4f} (per image "
                 f"{', '.join(f'{pearson(to_input(c, size), e):.3f}' for c, e in zip(res['fast']['cams'], exact))})"
                 f"   free baseline r vs exact {r_vs('baseline', res['exact']['cams']):.4f}")
    lines.append(f"  Grad-CAM / one fp32 forward = {med['gradcam'] / med['forward']:.2f}   "
                 f"library Grad-CAM / ours = {med['library_gradcam'] / med['gradcam']:.2f}x")
    return lines


def a_passes(res: dict) -> int:
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
    p.add_argument("--quick", action="store_true", help="1 image at 128 px, library share 1/16")
    p.add_argument("--classes", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--paths", help=argparse.SUPPRESS)
    p.add_argument("--passes", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.dtype is None:
        from hub.cam import cpu_supports_bf16

        a.dtype = "bfloat16" if cpu_supports_bf16() else "auto"
    if a.worker:
        print(json.dumps(worker(a)))
        return
    if a.quick:
        a.images, a.sizes, a.library_full_max, a.library_share = 1, [128], 0, 1 / 16
    import torch

    threads = a.threads or torch.get_num_threads()
    paths = pick_images(a.data, a.images)
    model_note = f"trained model {a.model_dir}" if a.model_dir else \
        "RANDOM-INIT resnet50 (seed 0): speed is representative, fast-mode r is not"
    print(f"model: {model_note}\nimages: {len(paths)} from {a.data}\n"
          f"torch {torch.__version__}, {threads} threads, exact dtype {a.dtype}, fast k={a.k} dtype {a.fast_dtype}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(paths, f)
    start = time.perf_counter()
    try:
        for size in a.sizes:
            share = 1.0 if size <= a.library_full_max else a.library_share
            res = {m: run_worker(a, m, size, f.name, share) for m in METHODS if m != "floor"}
            res["floor"] = run_worker(a, "floor", size, f.name, share, passes=a_passes(res))
            print("\n".join(report(size, res, a)), flush=True)
    finally:
        os.unlink(f.name)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
