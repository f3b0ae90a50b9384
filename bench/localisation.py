"""Does the model look at the lesion? The card's table on annotated images, its cost, what Grad-CAM's layer buys.

    python -m bench.localisation --model runs/mri --data ../shared/data/brain-mri-figshare/train \
        --annotations ../shared/data/brain-mri-figshare/boxes --limit 500

Prints, for the true class of up to --limit annotated images (spread over the classes): each method's pointing
game, energy and energy / area against the centre, flat and random baselines, the shortcut check (accuracy as is,
lesion hidden, only the lesion) and, with --reference-data/--reference-annotations (the training images and their
regions), the check's floor: what the lesion's place and size alone give (hub/explain/place.py); seconds per image
(wall and CPU), then:
- Grad-CAM at layer3 against layer4 (the default), each with its own grid's random baseline: does an earlier
  stage (8 x 8 cells at 128 px against layer4's 4 x 4; the same 8 x 8 on a model whose layer4 is dilated to
  output stride 16) land on the lesion more often?
- with --centred: Grad-CAM of the centred logit (the target logit less the mean of all the logits, the part the
  softmax reads) beside Grad-CAM of the logit, on the same images (docs/lesion-mri.md: not adopted);
- with --dtype-check N: Score-CAM's masked passes in bf16 (the default where the CPU runs it natively) against
  fp32 on the first N images: how often the hit and how much the energy change.
Annotations are read for every image under --data (the reader refuses boxes without an image), then limited.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np


def centred_head(model):
    """A copy of `model` whose head rows are each less the rows' mean (bias likewise). A shift shared by every
    logit cancels in the softmax, so the copy's probabilities are the model's, and its logits are the model's
    centred ones: Grad-CAM of its target logit is Grad-CAM of the part of the logit that tells classes apart."""
    import torch

    twin = copy.deepcopy(model)
    head = twin.get_classifier()
    with torch.no_grad():
        head.weight -= head.weight.mean(dim=0, keepdim=True)
        head.bias -= head.bias.mean()
    return twin


def run(model_dir: str, data: str, annotations: str, limit: int | None, max_channels: int, tolerance: float,
        dtype_check: int, seed: int = 0, reference: tuple[str, str] | None = None, mirror: bool = True,
        fills: tuple[str, ...] = (), centred: bool = False) -> None:
    """Measure and print the report, the layer comparison and (optionally) the bf16 check."""
    import torch

    from hub import from_pretrained
    from hub.display import interval_text
    from hub.explain.batch import collect_images, read_item_annotations, reference_regions, spread
    from hub.explain.cam import SCORECAM_FILL
    from hub.explain.lesion import cam_grid, lesion_rows, report_lines, summarise
    from hub.explain.place import place_by_path

    clf = from_pretrained(model_dir, device="cpu")
    items = collect_images([data], clf.labels)
    found = read_item_annotations(annotations, items, [data])
    annotated = [i for i in items if i.truth is not None and found.get(i.path) is not None]
    chosen = [(i.path, i.truth) for i in spread(annotated, limit or len(annotated))]
    print(f"{model_dir}: {clf.data_config['input_size'][-1]} px, {len(chosen)} of {len(annotated)} annotated images "
          f"({len(items) - len(annotated)} without an annotation or a class folder), {torch.get_num_threads()} "
          f"threads")

    fills = tuple(fills) or (SCORECAM_FILL,)

    def measured(model=clf.model, **options):
        wall, cpu = time.perf_counter(), time.process_time()
        options = {"scorecam_fill": fills[0], **options}
        rows = lesion_rows(model, chosen, found, tolerance=tolerance, max_channels=max_channels, seed=seed,
                           transform=clf.transform, **options)
        return rows, (time.perf_counter() - wall) / len(chosen), (time.process_time() - cpu) / len(chosen)

    rows, wall, cpu = measured()
    known = reference_regions(*reference, clf.labels) if reference else []
    place = place_by_path(known, found, [r.path for r in rows if not r.error], mirror) if reference else None
    report = summarise(rows, 0, tolerance, place=place, reference_images=len(known))
    print("\n".join(report_lines(report, Path(data).name)))
    print(f"measured: {wall:.2f} s an image wall, {cpu:.2f} s CPU time (all threads); "
          f"{len(chosen)} images in {wall * len(chosen) / 60:.1f} min")

    layer3, _, _ = measured(methods=("gradcam",), layer="layer3")
    fine = summarise(layer3, 0, tolerance)
    x = clf.preprocess(chosen[0][0])
    print("Grad-CAM target layer (pointing game, energy / area):")
    for name, r in (("layer4", report), ("layer3", fine)):
        g, b = r["methods"]["gradcam"], r["baselines"]["random"]
        cells = "x".join(map(str, cam_grid(clf.model, x, name)))
        print(f"  {name} ({cells} cells): Grad-CAM {interval_text(g['pointing_game'])}, "
              f"ratio {g['ratio']['mean']:.2f}; random on its grid {b['pointing_game']['mean']:.3f}, "
              f"ratio {b['ratio']['mean']:.2f}")
    if centred:
        twin = summarise(measured(centred_head(clf.model), methods=("gradcam",))[0], 0, tolerance)
        print(f"Grad-CAM target, on the same {len(chosen)} images (pointing game, energy / area):")
        for name, r in (("the logit", report), ("the centred logit", twin)):
            g = r["methods"]["gradcam"]
            print(f"  {name:17s} {interval_text(g['pointing_game'])}, ratio {interval_text(g['ratio'])}")
    if len(fills) > 1:
        print(f"Score-CAM fill (what a mask removes becomes), on the same {len(chosen)} images:")
        for fill in fills:
            r = report if fill == fills[0] else summarise(measured(methods=("scorecam",), scorecam_fill=fill)[0], 0,
                                                          tolerance)
            s = r["methods"]["scorecam"]
            print(f"  {fill:8s} pointing {interval_text(s['pointing_game'])}, energy / area "
                  f"{interval_text(s['ratio'])}")
    if dtype_check:
        subset = chosen[:dtype_check]
        fp32 = lesion_rows(clf.model, subset, found, methods=("scorecam",), tolerance=tolerance,
                           max_channels=max_channels, seed=seed, transform=clf.transform, dtype="float32",
                           scorecam_fill=fills[0])
        auto = {r.path: r for r in rows}
        same = [auto[r.path].maps["scorecam"].hit == r.maps["scorecam"].hit for r in fp32]
        diff = [abs(auto[r.path].maps["scorecam"].energy - r.maps["scorecam"].energy) for r in fp32]
        flips = [auto[r.path].predicted["hidden"] != r.predicted["hidden"] for r in fp32]
        speed = [(auto[r.path].methods["scorecam"].seconds, r.methods["scorecam"].seconds) for r in fp32]
        print(f"Score-CAM in the default precision vs fp32 on {len(subset)} images: the same hit on "
              f"{np.mean(same):.1%}, mean |energy difference| {np.mean(diff):.4f} (max {np.max(diff):.4f}); "
              f"the check's answer with the lesion hidden differs on {np.mean(flips):.1%}; "
              f"{np.mean([a for a, _ in speed]):.2f} s against {np.mean([b for _, b in speed]):.2f} s an image")


def main(argv: list[str] | None = None) -> None:
    from hub.explain.cam import SCORECAM_FILL
    from hub.explain.imputation import IMPUTATIONS

    p = argparse.ArgumentParser(prog="python -m bench.localisation", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (python -m train) or REPO_ID[@REV]")
    p.add_argument("--data", required=True, help="class-per-folder images (the class is the folder's name)")
    p.add_argument("--annotations", required=True, help="their expert regions: YOLO .txt, COCO .json or masks")
    p.add_argument("--limit", type=int, help="at most this many annotated images, spread over the classes")
    p.add_argument("--max-channels", type=int, default=32, help="Score-CAM's k (fast mode)")
    p.add_argument("--tolerance", type=float, default=15.0, help="pointing game tolerance in image pixels")
    p.add_argument("--dtype-check", type=int, default=0, metavar="N",
                   help="also run Score-CAM in fp32 on the first N images and compare")
    p.add_argument("--reference-data", help="the model's training images (class folders): with "
                   "--reference-annotations, the shortcut check's floor from the lesion's place alone")
    p.add_argument("--reference-annotations", help="the expert regions of --reference-data")
    p.add_argument("--scorecam-fill", nargs="+", choices=IMPUTATIONS, default=[SCORECAM_FILL], metavar="FILL",
                   help=f"what a Score-CAM mask removes becomes ({', '.join(IMPUTATIONS)}); the first is the report's, "
                        "each further one adds a Score-CAM row on the same images")
    p.add_argument("--centred", action="store_true",
                   help="also Grad-CAM of the centred logit (the target logit less the mean of all the logits)")
    p.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="the model was trained without horizontal flips: left and right are different places")
    a = p.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        p.error(f"--limit must be at least 1, got {a.limit}")
    if (a.reference_data is None) != (a.reference_annotations is None):
        p.error("--reference-data and --reference-annotations go together: the training images and their regions")
    reference = (a.reference_data, a.reference_annotations) if a.reference_data else None
    run(a.model, a.data, a.annotations, a.limit, a.max_channels, a.tolerance, a.dtype_check, reference=reference,
        mirror=a.mirror, fills=tuple(dict.fromkeys(a.scorecam_fill)), centred=a.centred)


if __name__ == "__main__":
    main()
