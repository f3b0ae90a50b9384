"""Does the model look at the lesion? Its maps against expert regions and against maps that know nothing, and
its answer with the region hidden: one report over many annotated images.

    report = lesion_report(model, [(path, true_class_index), ...], annotations)   # JSON-ready dict
    rows = lesion_rows(model, items, annotations)    # one LesionRow per annotated image (the CLI's CSV)
    report = summarise(rows, skipped=..., groups=...)

Every annotated image's TRUE class is explained with each method (Grad-CAM, and Score-CAM in fast mode with
k = 32 masked passes by default, on CUDA too: 500 slices in minutes on a CPU; no faithfulness curves) and
scored with `localisation.localise_all` at the image's own size, beside the centre, flat and random baselines.
The shortcut check (`hub.explain.shortcut`) runs the image as is, with the region hidden and with only the
region kept. Images without an annotation are counted and skipped, never explained. Each figure is a mean with
a 95% percentile bootstrap interval; with `groups` (image path -> patient) whole patients are resampled, since
one patient's slices are not independent.

Cost: about 37 forward passes an image (Score-CAM's 33, Grad-CAM's 1 and its head's backward, the check's 3).
Measured by bench/localisation.py (ResNet50 at 128 px with a stride-16 last stage, 512 x 512 JPEG slices, both
methods, 2 CPU cores with nothing else running): 0.52 s an image (Grad-CAM 0.05 s, Score-CAM 0.39 s), 500
slices in 4.3 min; 2-6x that while the cores are shared with training.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from hub.annotations import Annotations, Region
from hub.device import autocast
from hub.display import MAP_NAMES, interval_text
from hub.errors import AnnotationError
from hub.explain.cam import FAST_CHANNELS, SCORECAM_FILL, MaxChannels, resolve_dtype
from hub.explain.explanation import cells_are_patches, explain, model_device, model_transform
from hub.explain.localisation import BASELINES, TOLERANCE, Localisation, baseline_maps, localise_all
from hub.explain.place import K as PLACE_K
from hub.explain.place import place_by_path
from hub.explain.shortcut import GROW_SHARE, VIEWS, views
from hub.explain.split import split_model
from hub.explain.stats import bootstrap_interval
from hub.images import ImageError, load_image
from hub.model import labels_of

METHODS = ("gradcam", "scorecam")
LEVEL, RESAMPLES = 0.95, 2000
VIEW_BATCH = 8           # images whose shortcut views share one forward pass (24 inputs)
SCORES = ("hit", "energy", "ratio")
FIGURES = {"pointing_game": "hit", "energy": "energy", "ratio": "ratio"}  # report key -> Localisation field

Item = tuple[Union[str, Path], int]          # an image and its true class index
Progress = Callable[[int, int], None]        # (images done, images to do)


@dataclass(frozen=True)
class MapInfo:
    """How one method's map of one image was made."""

    mode: str        # "gradient", "fast" or "exact"
    passes: int      # masked forward passes (Score-CAM's k)
    layer: str
    seconds: float
    fill: Optional[str] = None   # Score-CAM's fill (hub.explain.imputation); None for Grad-CAM


@dataclass(frozen=True)
class LesionRow:
    """One annotated image: where each map lands, what the model answers on each view, what it took."""

    path: Path
    truth: int
    area: float = math.nan                                      # the region's share of the image
    maps: Mapping[str, Localisation] = field(default_factory=dict)   # each method, then each baseline
    predicted: Mapping[str, int] = field(default_factory=dict)       # view ("as_is", "hidden", "only") -> class
    p_true: Mapping[str, float] = field(default_factory=dict)        # view -> p(true class)
    methods: Mapping[str, MapInfo] = field(default_factory=dict)
    seconds: float = 0.0                                        # the whole image: maps, baselines, check
    error: str = ""                                             # an unreadable image: why (nothing else set)


def columns(methods: Sequence[str]) -> list[str]:
    """The localisation CSV's columns for `methods`."""
    return ["image", "true_label", "area", *[f"{n}_{s}" for n in (*methods, *BASELINES) for s in SCORES],
            *[f"predicted_{v}" for v in VIEWS], *[f"p_true_{v}" for v in VIEWS], "seconds", "error"]


def csv_row(row: LesionRow, labels: Sequence[str], methods: Sequence[str]) -> dict[str, str]:
    """`row` as the localisation CSV writes it (numbers formatted here, the one place they become text)."""
    out = dict.fromkeys(columns(methods), "")
    out.update(image=str(row.path), true_label=labels[row.truth], error=row.error)
    if row.error:
        return out
    out.update(area=f"{row.area:.6f}", seconds=f"{row.seconds:.4f}")
    for name, loc in row.maps.items():
        out.update({f"{name}_hit": str(int(loc.hit)), f"{name}_energy": f"{loc.energy:.6f}",
                    f"{name}_ratio": f"{loc.ratio:.6f}"})
    for view in VIEWS:
        out.update({f"predicted_{view}": labels[row.predicted[view]], f"p_true_{view}": f"{row.p_true[view]:.6f}"})
    return out


def cam_grid(model: nn.Module, x: torch.Tensor, layer=None) -> tuple[int, int]:
    """(h, w) of the target layer's map for the model input `x` (1xCxHxW): the random baseline's grid."""
    split = split_model(model, layer)
    with split.session(), torch.inference_mode():
        acts, _, _ = split.run(x)
    return tuple(acts.shape[-2:])


@contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """The model's weights in channels_last memory while the block runs, then exactly the tensors they were.

    Values are unchanged; the maps' single-image passes run ~2x faster on a CPU with channels_last weights
    (ResNet50, 128 px: 610 -> 220 ms of CPU time an image, measured on the shared 2-core machine)."""
    saved = {p: p.data for p in model.parameters() if p.ndim == 4}
    try:
        for p in saved:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
        yield model
    finally:
        for p, data in saved.items():
            p.data = data


def view_probabilities(model: nn.Module, batch: Sequence[torch.Tensor], device: torch.device,
                       dtype: Optional[torch.dtype]) -> np.ndarray:
    """Class probabilities of preprocessed inputs (each CxHxW), in one pass."""
    x = torch.stack(list(batch)).to(device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device, dtype):
        return torch.softmax(model(x).float(), dim=-1).cpu().numpy()


def lesion_rows(model: nn.Module, items: Sequence[Item], annotations: Annotations,
                methods: Sequence[str] = METHODS, tolerance: float = TOLERANCE,
                max_channels: MaxChannels = FAST_CHANNELS, seed: int = 0,
                device: Union[str, torch.device, None] = None, progress: Optional[Progress] = None, *,
                layer=None, dtype: Union[str, torch.dtype, None] = "auto",
                transform: Optional[Callable] = None, scorecam_fill: str = SCORECAM_FILL) -> list[LesionRow]:
    """A `LesionRow` for every item that has a region in `annotations` (the others are skipped).

    `dtype` "auto": the masked passes and the check's in bf16 where the device runs it natively (CUDA, and
    CPUs with AVX512-BF16/AMX, as `hub.device.autocast_dtype`), else fp32; the maps' own base passes stay fp32.
    (bf16 against fp32, a ResNet50 trained on the MRI slices, 30 of them: the same Score-CAM hit on all 30, energy
    within 0.0003, the same answers with the lesion hidden; Score-CAM 0.34 s an image against 0.81 s.)
    `layer`: the CAM's target layer (default the last feature stage); `transform`: the model's preprocessing
    (default its timm data config); `scorecam_fill`: what Score-CAM's masks remove becomes. The model's conv
    weights sit in channels_last memory while this runs (`channels_last`: values unchanged, the tensors put back
    after), so no other thread should use the model meanwhile."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    model.eval()
    device = torch.device(device) if device is not None else model_device(model)
    precision = resolve_dtype(device, dtype, reduced_on_cpu=True)   # bf16 on a bf16-native CPU too: see above
    transform = transform or model_transform(model)
    labels = labels_of(model)
    todo = [(Path(p), int(t)) for p, t in items if annotations.get(Path(p)) is not None]
    patches, grid, rows, pending = cells_are_patches(model), None, [], []

    def flush() -> None:
        """The views of the pending images in one pass (3 inputs a pass cost ~4x more per input than 24)."""
        start = time.perf_counter()
        inputs = [v for _, views_ in pending for v in views_]
        probs = iter(view_probabilities(model, inputs, device, precision) if inputs else ())
        share = (time.perf_counter() - start) / max(1, len(inputs) // len(VIEWS))   # each image's part of it
        for row, views_ in pending:
            if not views_:   # an unreadable image: kept in its place, nothing to add
                rows.append(row)
                continue
            p = {v: next(probs) for v in VIEWS}
            rows.append(replace(row, predicted={v: int(q.argmax()) for v, q in p.items()},
                                p_true={v: float(q[row.truth]) for v, q in p.items()}, seconds=row.seconds + share))
        pending.clear()

    def one(index: int, path: Path, truth: int) -> tuple[LesionRow, list[torch.Tensor]]:
        """One image's maps, baselines and localisations, and its three views preprocessed for the check."""
        nonlocal grid
        start = time.perf_counter()
        region = annotations.get(path)
        try:
            img = load_image(path)
        except ImageError as exc:
            return LesionRow(path, truth, error=str(exc)), []
        size = (img.height, img.width)
        x = transform(img)
        model_size = tuple(x.shape[-2:])
        grid = grid or cam_grid(model, x[None].to(device), layer)   # one grid for all: one input size
        maps, info = {}, {}
        for method in methods:
            e = explain(model, img, method=method, target=truth, max_channels=max_channels, transform=transform,
                        labels=labels, device=device, layer=layer, dtype=precision, seed=seed, faithfulness=False,
                        scorecam_fill=scorecam_fill)
            maps[method], info[method] = e.heatmap, MapInfo(e.mode, e.passes, e.layer, e.seconds, e.fill)
        # A fresh random map per image (seeded by its place in the list), else "random" is one fixed map.
        maps.update(baseline_maps(size, grid, model_size, patches, seed=(seed, index)))
        found = localise_all(maps, region, tolerance)
        inputs = [x, *(transform(v) for name, v in views(img, region, model_size).items() if name != "as_is")]
        return LesionRow(path, truth, found[next(iter(found))].area, found, methods=info,
                         seconds=time.perf_counter() - start), inputs

    with channels_last(model):
        for index, (path, truth) in enumerate(todo):
            pending.append(one(index, path, truth))
            if len(pending) >= VIEW_BATCH:
                flush()
            if progress is not None:
                progress(index + 1, len(todo))
        flush()
    return rows


def interval(values: Sequence[float], units: Optional[Sequence[Hashable]] = None, seed: int = 0) -> dict[str, float]:
    """Mean and 95% percentile bootstrap interval; whole units (patients) resampled when `units` is given."""
    v = np.asarray(values, np.float64)
    if units is None:
        low, high = bootstrap_interval(v, LEVEL, RESAMPLES, seed)
    else:
        # The cluster bootstrap of train.metrics.bootstrap_intervals (a layer above hub: not importable here),
        # for a mean: draw whole patients; each drawn patient brings all its images.
        ids = np.unique(np.asarray([str(u) for u in units]), return_inverse=True)[1].ravel()
        sums, sizes = np.bincount(ids, weights=v), np.bincount(ids)
        draws = np.random.default_rng(seed).integers(0, len(sums), (RESAMPLES, len(sums)))
        means = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
        tail = (1.0 - LEVEL) / 2.0 * 100.0
        low, high = (float(q) for q in np.percentile(means, [tail, 100.0 - tail]))
    return {"mean": float(v.mean()), "low": float(low), "high": float(high)}


def summarise(rows: Sequence[LesionRow], skipped: int = 0, tolerance: float = TOLERANCE,
              groups: Optional[Mapping] = None, seed: int = 0, place: Optional[Mapping[Path, int]] = None,
              reference_images: int = 0) -> dict:
    """The JSON-ready report of `rows` (`skipped`: images given without an annotation; `place`: image path ->
    the class its region's place alone predicts, `hub.explain.place.place_by_path` over `reference_images`
    training regions, for the shortcut check's floor)."""
    done = [r for r in rows if not r.error]
    if not done:
        raise AnnotationError(f"no annotated image to report on ({len(rows)} unreadable, {skipped} without an "
                              "annotation); check that the annotations belong to these images")
    units = None
    if groups is not None:
        absent = [r.path for r in done if r.path not in groups]
        if absent:
            raise ValueError(f"groups has no patient for {absent[0]} ({len(absent)} image(s)); give every image one")
        units = [groups[r.path] for r in done]
    stat = lambda values: interval(values, units, seed)  # noqa: E731

    def figures(name: str) -> dict:
        return {key: stat([float(getattr(r.maps[name], f)) for r in done]) for key, f in FIGURES.items()}

    methods = {}
    for name, info in done[0].methods.items():
        methods[name] = {**figures(name), "mode": info.mode, "masked_passes": info.passes, "layer": info.layer,
                         "seconds": float(np.mean([r.methods[name].seconds for r in done])),
                         **({"fill": info.fill} if info.fill else {})}
    shortcut = {"accuracy": {v: stat([r.predicted[v] == r.truth for r in done]) for v in VIEWS},
                "p_true": {v: stat([r.p_true[v] for r in done]) for v in VIEWS},
                "fill": "pull-push inpainting", "grow_share": GROW_SHARE}
    if place is not None:
        shortcut["place_only"] = {"accuracy": stat([place[r.path] == r.truth for r in done]),
                                  "k": min(PLACE_K, reference_images), "reference_images": reference_images}
    return {"images": len(done), "skipped": skipped, "unreadable": len(rows) - len(done), "tolerance": tolerance,
            "target": "true class", "level": LEVEL, "resampled": "images" if units is None else "groups",
            "units": len(done) if units is None else len({str(u) for u in units}),
            "area": stat([r.area for r in done]), "methods": methods,
            "baselines": {name: figures(name) for name in BASELINES}, "shortcut": shortcut,
            "seconds_per_image": float(np.mean([r.seconds for r in done]))}


def lesion_report(model: nn.Module, items: Sequence[Item], annotations: Annotations,
                  methods: Sequence[str] = METHODS, tolerance: float = TOLERANCE,
                  max_channels: MaxChannels = FAST_CHANNELS, groups: Optional[Mapping] = None, seed: int = 0,
                  device: Union[str, torch.device, None] = None, progress: Optional[Progress] = None,
                  reference: Optional[Sequence[tuple[Region, int]]] = None, mirror: bool = False,
                  **options) -> dict:
    """`summarise(lesion_rows(...))`: the lesion report of `items` ((path, true class index) pairs).

    `groups`: image path -> patient (or slide) id, for intervals that resample whole patients. `reference`: the
    training images' (region, class) pairs, for the shortcut check's floor (what the region's place alone gives
    away, `hub.explain.place`; `mirror` for a model trained with horizontal flips). `options`: `layer`, `dtype`,
    `transform`, `scorecam_fill` of `lesion_rows`."""
    rows = lesion_rows(model, items, annotations, methods, tolerance, max_channels, seed, device, progress,
                       **options)
    skipped = sum(annotations.get(Path(p)) is None for p, _ in items)
    place = place_by_path(reference, annotations, [r.path for r in rows if not r.error], mirror) if reference else None
    return summarise(rows, skipped, tolerance, groups, seed, place, len(reference or ()))


# The shortcut check's views as this report names them (the card, about lesions, says "lesion hidden").
VIEW_NAMES = {"as_is": "as is", "hidden": "region hidden", "only": "only the region"}


def report_lines(report: dict, split: str = "images") -> list[str]:
    """The report as printed by the CLI and the bench: a table of maps, the shortcut check, the cost."""
    skipped = f" ({report['skipped']} without an annotation, skipped)" if report["skipped"] else ""
    lines = [f"{split}: {report['images']} annotated image(s){skipped}, true class explained, a hit within "
             f"{report['tolerance']:g} px; 95% intervals over {report['units']} {report['resampled']}",
             f"{'map':20s}{'pointing game':24s}{'energy in region':24s}energy / area"]
    for name, f in [*report["methods"].items(), *report["baselines"].items()]:
        lines.append(f"{MAP_NAMES.get(name, name):20s}{interval_text(f['pointing_game']):24s}"
                     f"{interval_text(f['energy']):24s}{interval_text(f['ratio'], 2)}")
    acc = report["shortcut"]["accuracy"]
    lines.append("shortcut check, accuracy: " + ", ".join(f"{VIEW_NAMES[v]} {interval_text(acc[v])}" for v in VIEWS))
    if "place_only" in report["shortcut"]:
        p = report["shortcut"]["place_only"]
        lines.append(f"  the region's place and size alone ({p['k']} nearest of {p['reference_images']} training "
                     f"regions): {interval_text(p['accuracy'])}, the floor for 'region hidden'")
    per = ", ".join(f"{MAP_NAMES.get(m, m)} {f['seconds']:.2f} s" for m, f in report["methods"].items())
    lines.append(f"{report['seconds_per_image']:.2f} s an image ({per})")
    return lines
