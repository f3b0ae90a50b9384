"""Latency of a study: a 20-slice DICOM series answered per slice and per study, against one image in the same run.

Two routes, each timed for a study of --slices slices and for one slice alone (the baseline), interleaved
over --repeats rounds so drift of the machine hits both: the command line's (`hub.study.read_studies` +
`explain_studies`: checks, Grad-CAM a slice, overlays and CSVs on disk) and the app's Study endpoint
(`space.study.StudyEndpoint.study`, called directly: the same checks, chunks of 16, PNGs in Gradio's cache,
the CSVs and overlays.zip). Printed: p50 and p90 of each, the study's p50 per slice, and per slice / one image.
Also printed for scale: one Grad-CAM of one image alone (`Classifier.explain`, no file, no check).

    python -m bench.study                          # ResNet50 from scratch at 224 px, 3 classes, 20 slices
    python -m bench.study --model runs/mri --slices 20 --repeats 7
    python -m bench.study --format png --size 512

The default model is `timm.create_model('resnet50', num_classes=3)` with random weights, saved as a model
folder by `hub.model.save_model_folder`: latency does not depend on what the weights learnt.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = ["a", "b", "c"]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.study", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder or REPO_ID[@REV] (default: ResNet50 from scratch, 224 px)")
    p.add_argument("--slices", type=int, default=20, help="slices in the study (default: 20)")
    p.add_argument("--size", type=int, default=256, help="slice side in pixels (default: 256)")
    p.add_argument("--format", choices=["dicom", "png"], default="dicom", help="slice files (default: dicom)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds of each route (default: 5)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    return p.parse_args(argv)


def scratch_model(out: Path, size: int = 224) -> Path:
    """ResNet50 from scratch (3 classes) saved through the project's own save path."""
    import timm

    from hub.model import save_model_folder
    from train.data import eval_data_config, trained_pretrained_cfg

    model = timm.create_model("resnet50", num_classes=len(LABELS), pretrained=False)
    data_config = eval_data_config(model, size)
    model.pretrained_cfg = trained_pretrained_cfg(model, data_config)
    return save_model_folder(model, LABELS, out, data_config)


def make_slices(folder: Path, count: int, size: int, fmt: str) -> list[Path]:
    """`count` slices of one series: greyscale noise with a bright disc, as DICOM (one series) or PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    paths = []
    study, series = "1.2.826.0.1.3680043.8.498.10", "1.2.826.0.1.3680043.8.498.11"
    for i in range(count):
        arr = rng.normal(1000, 100, (size, size)) + 800 * (np.hypot(yy - size / 2, xx - size / 2) < size / (4 + i % 3))
        arr = np.clip(arr, 0, 4095).astype(np.uint16)
        if fmt == "png":
            path = folder / f"slice{i:03d}.png"
            Image.fromarray(arr).save(path)
        else:
            path = folder / f"IM{i:04d}.dcm"
            write_dicom(path, arr, study, series, i + 1)
        paths.append(path)
    return paths


def write_dicom(path: Path, arr: np.ndarray, study: str, series: str, instance: int) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, instance
    ds.Modality, ds.RescaleSlope, ds.RescaleIntercept = "CT", 1, -1024
    ds.set_pixel_data(arr, "MONOCHROME2", 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=True)


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv=None) -> int:
    a = parse(argv)
    import torch

    from hub import from_pretrained
    from hub.study import explain_studies, iter_images, read_studies
    from space.serving import load
    from space.study import StudyEndpoint

    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="bench-study-") as tmp:
        work = Path(tmp)
        model = a.model or str(scratch_model(work / "model"))
        clf = from_pretrained(model, device=a.device)
        served = load(model, device=a.device)
        app = StudyEndpoint(served)
        study = make_slices(work / "study", a.slices, a.size, a.format)
        one = study[:1]

        def cli(paths: list[Path], k: int) -> None:
            request = read_studies([str(x) for x in paths], work / f"w{k}")
            explain_studies(clf, request, work / f"out{k}")

        def endpoint(paths: list[Path], k: int) -> None:
            app.study([str(x) for x in paths], None, progress=lambda *args, **kw: None)

        img = next(iter_images(read_studies([str(one[0])], work / "w-one").studies[0].slices))[1]
        routes = {"cli": cli, "app": endpoint}
        times: dict[tuple[str, str], list[float]] = {}
        for fn in routes.values():  # warm-up: first calls allocate
            fn(one, -1)
            fn(study, -2)
        clf.explain(img, method="gradcam", faithfulness=False)
        k = 0
        for _ in range(a.repeats):
            for name, fn in routes.items():
                for label, paths in (("one", one), ("study", study)):
                    k += 1
                    start = time.perf_counter()
                    fn(paths, k)
                    times.setdefault((name, label), []).append(time.perf_counter() - start)
            start = time.perf_counter()
            clf.explain(img, method="gradcam", faithfulness=False)
            times.setdefault(("explain", "one"), []).append(time.perf_counter() - start)
    size = clf.data_config["input_size"][-1]
    print(f"model input {size} px, {a.slices} {a.format} slices of {a.size} px, device {clf.device}, "
          f"{torch.get_num_threads()} torch threads, {a.repeats} rounds")
    print(f"one Grad-CAM of one image alone (Classifier.explain): p50 {p(times[('explain', 'one')], 50):.3f} s")
    print("route  one image p50   study p50 (p90)        per slice   per slice / one image")
    for name in routes:
        base, full = times[(name, "one")], times[(name, "study")]
        per = statistics.median(full) / a.slices
        print(f"{name:5s}  {p(base, 50):8.3f} s   {p(full, 50):8.3f} s ({p(full, 90):.3f} s)   {per:7.3f} s   "
              f"{per / p(base, 50):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
