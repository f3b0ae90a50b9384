"""python -m hub: push a model folder to the Hub, pull a revision back, explain many images, calibrate.

    python -m hub push runs/demo/model org/her2-resnet50 --tag auto
    python -m hub pull org/her2-resnet50@v2 ./her2-v2
    python -m hub explain runs/demo/model runs/demo/data --method both --out runs/demo/explained --faithfulness
    python -m hub explain runs/demo/model scans/ --out out --target "ring vs cross" --sanity
    python -m hub explain runs/mri mri/test --annotations mri/test-boxes --out out    # does it look at the lesion?
    python -m hub explain runs/mri mri/test --annotations mri/test-boxes --out out --reference-data mri/train \
        --reference-annotations mri/train-boxes                                  # ... against its place alone
    python -m hub explain runs/mri scans/ export.zip --by-study --out out        # an answer per study and slice
    python -m hub calibrate runs/mri-val --data mri/val                          # fit a temperature (hub.calibrate)

Deploying the app to a Space is the app's own command: `python -m space deploy ...`.
"""
from __future__ import annotations

import argparse
import sys

from hub.explain.batch import SANITY_IMAGES
from hub.explain.cam import FAST_CHANNELS, SCORECAM_FILL, MaxChannels, parse_max_channels
from hub.explain.faithfulness import STEPS
from hub.explain.imputation import IMPUTATIONS
from hub.explain.localisation import TOLERANCE
from hub.study import RULE as STUDY_RULE


def max_channels_option(value: str) -> MaxChannels:
    """--max-channels: auto, exact or K >= 1; a ValueError naming the option otherwise."""
    try:
        return parse_max_channels(value)
    except ValueError as exc:
        raise ValueError(str(exc).replace("max_channels", "--max-channels")) from None


def parser() -> argparse.ArgumentParser:
    """Sub-commands and their options."""
    p = argparse.ArgumentParser(prog="python -m hub", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("push", help="upload a model folder as one commit (token from HF_TOKEN or `hf auth login`)")
    s.add_argument("folder", help="model folder written by `python -m train`")
    s.add_argument("repo_id", help="ORG/NAME on the Hub (created if missing)")
    s.add_argument("--tag", metavar="vN|auto", help="tag the commit; auto = the next free vN")
    s.add_argument("--branch", help="commit to this branch instead of main (created if missing)")
    s.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    s.add_argument("--private", action="store_true", help="create the repo as private")
    s.add_argument("--message", help="commit message")
    s = sub.add_parser("pull", help="download a revision into a folder")
    s.add_argument("repo", metavar="REPO_ID[@REV]", help="e.g. org/name@v2 (default revision: main)")
    s.add_argument("out", help="folder to write")
    s = sub.add_parser("calibrate", help="fit a temperature on held-out labelled images (or carry one) into a "
                       "local model folder: config.json, metrics.json and the card")
    s.add_argument("folder", help="local model folder written by `python -m train`")
    s.add_argument("--data", required=True, metavar="DIR",
                   help="held-out images in class folders named after the model's labels (never its training "
                        "images): T is fitted on them, or with --temperature, checked on them")
    s.add_argument("--temperature", metavar="T|MODEL",
                   help="carry this temperature instead of fitting one: a positive number, or the model folder of "
                        "a run with validation (its fitted T)")
    s.add_argument("--split-name", metavar="NAME", help="the name of --data in metrics.json and the card "
                   "(default: its folder name)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    s = sub.add_parser("explain", help="heatmaps for many images: overlays/*.png and explanations.csv in --out")
    s.add_argument("model", metavar="MODEL", help="model folder, or REPO_ID[@REV] on the Hub")
    s.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders (searched recursively)")
    s.add_argument("--out", required=True, help="folder for overlays/ and explanations.csv")
    s.add_argument("--method", choices=["scorecam", "gradcam", "both"],
                   help="default: both; gradcam with --by-study (one method there)")
    s.add_argument("--by-study", action="store_true",
                   help="IMAGES may also be zips: group the slices into studies (DICOM by series, hashed; other "
                        "images by folder), refuse a bad study with one line before any model work, answer each "
                        f"study by the rule '{STUDY_RULE}'; slices.csv, studies.csv and overlays/ in --out")
    s.add_argument("--max-channels", default="auto", metavar="auto|exact|K",
                   help=f"Score-CAM masked passes: auto = fast (k={FAST_CHANNELS}) on CPU, exact on CUDA; exact = "
                        "one pass per channel; K = fast mode with K passes (default: auto)")
    s.add_argument("--scorecam-fill", choices=IMPUTATIONS, default=SCORECAM_FILL,
                   help="what a Score-CAM mask removes becomes: a blur of the image, a smooth fill from the kept "
                        "pixels (linear), or the normalisation mean colour (constant, pytorch-grad-cam's x * mask); "
                        f"default: {SCORECAM_FILL}")
    s.add_argument("--target", metavar="LABEL", help="explain this class instead of the predicted one; "
                   "'A vs B' explains A rather than B (the map of logit A - logit B)")
    s.add_argument("--faithfulness", action="store_true",
                   help="explain each image's true class (from its folder name); summarise each method's "
                        "deletion/insertion areas (bootstrap 95%% intervals), baselines and sanity check into "
                        "faithfulness.json and, for a local model folder, into its metrics.json and model card")
    s.add_argument("--sanity", action="store_true",
                   help="cascading-randomisation sanity check of each method (sanity.json); implied by --faithfulness")
    s.add_argument("--sanity-images", type=int, default=SANITY_IMAGES, metavar="N",
                   help=f"images the sanity check re-explains, spread over the classes (default: {SANITY_IMAGES})")
    s.add_argument("--steps", type=int, default=STEPS,
                   help=f"steps of the deletion and insertion curves, at least 2 (default: {STEPS})")
    s.add_argument("--annotations", metavar="DIR",
                   help="expert regions of the images (YOLO .txt boxes, a COCO .json, or masks, matched by path "
                        "relative to IMAGES): explain each annotated image's true class (from its folder name), "
                        "score where each method's map lands against centre, flat and random maps, check the "
                        "answer with the region hidden; localisation.csv and localisation.json in --out and, "
                        "for a local model folder, its metrics.json and model card")
    s.add_argument("--reference-data", metavar="DIR",
                   help="with --annotations: the model's training images (class folders); with "
                        "--reference-annotations, the shortcut check also reports what the lesion's place and size "
                        "alone give (the floor 'region hidden' can fall to)")
    s.add_argument("--reference-annotations", metavar="DIR", help="the expert regions of --reference-data")
    s.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="the place floor: the model was trained without horizontal flips, so left and right are "
                        "different places")
    s.add_argument("--tolerance", type=float, default=TOLERANCE, metavar="PX",
                   help=f"pointing game: a hit within this many pixels of the region (default: {TOLERANCE:g})")
    s.add_argument("--split-name", metavar="NAME",
                   help="--annotations or --faithfulness: the name of the split the figures get in metrics.json "
                        "and on the card (default: the name of the IMAGES folder)")
    s.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity in the overlays (default: 0.5)")
    s.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    return p


def run_explain(args: argparse.Namespace) -> None:
    """The explain sub-command: check, load, collect, explain, summarise, sanity-check, record."""
    import json
    from pathlib import Path

    from hub import from_pretrained
    from hub.device import pick_device
    from hub.display import interval_text
    from hub.explain.batch import (
        CSV_NAME,
        SANITY_NAME,
        SUMMARY_NAME,
        annotation_root,
        collect_images,
        example_figure,
        explain_images,
        read_item_annotations,
        reference_regions,
        sanity_reports,
        summarise,
    )
    from hub.explain.cam import resolve_max_channels
    from hub.explain.faithfulness import IMPUTATION, check_steps
    from hub.records import is_model_folder, record_faithfulness

    if args.by_study:
        return run_by_study(args)
    if not 0.0 <= args.opacity <= 1.0:
        raise ValueError(f"--opacity must be between 0 and 1, got {args.opacity}")
    max_channels = max_channels_option(args.max_channels)  # checked before the model is loaded
    if args.faithfulness and args.target:
        raise ValueError("--faithfulness explains each image's true class; leave out --target")
    if args.sanity_images < 1:
        raise ValueError(f"--sanity-images must be at least 1, got {args.sanity_images}")
    steps = check_steps(args.steps, "--steps")
    if args.tolerance < 0:
        raise ValueError(f"--tolerance must be >= 0 pixels, got {args.tolerance:g}")
    if args.tolerance != TOLERANCE and not args.annotations:
        raise ValueError("--tolerance scores maps against expert regions: add --annotations DIR")
    if (args.reference_data is None) != (args.reference_annotations is None):
        raise ValueError("--reference-data and --reference-annotations go together: the model's training images "
                         "and their regions")
    if args.reference_data and not args.annotations:
        raise ValueError("--reference-data gives the shortcut check's place floor: add --annotations DIR")
    if args.split_name and not (args.annotations or args.faithfulness):
        raise ValueError("--split-name names the figures of --annotations or --faithfulness: add one of them")
    device = pick_device(args.device)  # a --device this machine lacks fails before any download
    clf = from_pretrained(args.model, device=device)
    k = resolve_max_channels(max_channels, clf.device)
    items = collect_images(args.images, clf.labels)
    methods = ["gradcam", "scorecam"] if args.method in ("both", None) else [args.method]
    annotations, reference = None, []
    if args.annotations:  # read (and refused) before anything is written
        annotations = read_item_annotations(args.annotations, items, args.images)
        unlabelled = [str(i.path) for i in items if i.truth is None and annotations.get(i.path) is not None]
        if unlabelled:
            raise ValueError(f"--annotations: {len(unlabelled)} annotated image(s) are not in a folder named after one "
                             f"of the model's labels {clf.labels} (e.g. {unlabelled[0]}); the region is the evidence "
                             "of the true class, which comes from the folder")
        if args.reference_data:  # read (and refused) before anything is written, too
            reference = reference_regions(args.reference_data, args.reference_annotations, clf.labels)
    rows = explain_images(clf, items, methods, args.out, max_channels=k, target=args.target,
                          true_class=args.faithfulness, opacity=args.opacity, steps=steps,
                          scorecam_fill=args.scorecam_fill)
    out = Path(args.out)
    failed = sorted({str(r.image) for r in rows if r.error})
    print(f"explained {len(items) - len(failed)} of {len(items)} images with {', '.join(methods)} "
          f"(Score-CAM {'exact' if k == 'exact' else f'fast, k={k}'}, {args.scorecam_fill} fill): {out / CSV_NAME}, "
          f"{out / 'overlays'}")
    if failed:
        print(f"warning: {len(failed)} unreadable image(s) skipped, see the error column: {', '.join(failed[:5])}",
              file=sys.stderr)
    summary = summarise(rows, steps, IMPUTATION)
    for method, s in summary.items():
        d, i = s["deletion"], s["insertion"]
        print(f"{method:9s} deletion {interval_text(d)}  insertion {interval_text(i)}  beats random "
              f"{s['beats']['random']:.0%}, centre "
              f"{s['beats']['centre']:.0%}  keep-remove {s['keep_remove']['mean']:+.3f}  over {s['images']} images, "
              f"{s['seconds']:.2f} s/image ({s['mode']})")
    agree = next((s["agreement"] for s in summary.values() if "agreement" in s), None)
    if agree:
        print(f"agreement of Grad-CAM and Score-CAM per image: rank correlation {agree['rank_correlation']:.2f}, "
              f"top-20% overlap {agree['top_overlap']:.0%}")
    if args.sanity or args.faithfulness:
        reports = sanity_reports(clf, items, methods, k, args.target, args.faithfulness, args.sanity_images,
                                 args.scorecam_fill)
        (out / SANITY_NAME).write_text(json.dumps(reports, indent=2) + "\n")
        for method, r in reports.items():
            figures = ", ".join(f"{s['randomised']} |rho| {s['rank_correlation']:.2f} SSIM {s['ssim']:.2f}"
                                for s in r["steps"])
            print(f"{method:9s} sanity check {'passed' if r['passed'] else 'FAILED'} over {r['images']} images "
                  f"(randomised cumulatively: {figures}; pass: both < {r['threshold']})")
            if method in summary:
                summary[method]["sanity"] = {key: r[key] for key in ("images", "steps", "passed", "threshold")}
    if annotations is not None:
        run_localisation(args, clf, items, annotations, methods, k, reference)
    if args.faithfulness:
        split = args.split_name or annotation_root(args.images).name  # every figure on the card names its split
        for s in summary.values():
            s["split"] = split
        (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
        if is_model_folder(args.model):
            record_faithfulness(args.model, summary, example_figure(rows, out, clf.labels))
            print(f"wrote the faithfulness figures into {Path(args.model) / 'metrics.json'}, its model card "
                  "and plots/explanations.png")
        else:
            print(f"wrote {out / SUMMARY_NAME}; to show it on the card, pull the model folder "
                  "(python -m hub pull), run explain on that folder and push it")


def run_by_study(args: argparse.Namespace) -> None:
    """--by-study: gather and check the studies (before the model is loaded), then one row per slice and an
    answer per study (hub.study)."""
    import tempfile
    from pathlib import Path

    from tqdm.auto import tqdm

    from hub import from_pretrained
    from hub.device import pick_device
    from hub.explain.cam import resolve_max_channels
    from hub.study import SLICES_CSV, STUDIES_CSV, explain_studies, read_studies

    other = [flag for flag, on in (("--faithfulness", args.faithfulness), ("--sanity", args.sanity),
                                   ("--annotations", args.annotations), ("--method both", args.method == "both"))
             if on]
    if other:
        raise ValueError(f"--by-study answers each slice and study with one method; run {', '.join(other)} "
                         "without --by-study")
    if not 0.0 <= args.opacity <= 1.0:
        raise ValueError(f"--opacity must be between 0 and 1, got {args.opacity}")
    max_channels = max_channels_option(args.max_channels)
    device = pick_device(args.device)  # a --device this machine lacks fails before any download
    with tempfile.TemporaryDirectory(prefix="hub-study-") as work:
        request = read_studies(args.images, work)   # refused here, before anything is loaded or written
        clf = from_pretrained(args.model, device=device)
        k = resolve_max_channels(max_channels, clf.device)
        with tqdm(total=request.slices, desc="slices", unit="slice") as bar:
            rows, answers = explain_studies(clf, request, args.out, args.method or "gradcam",
                                            "exact" if k is None else k, args.target, args.opacity,
                                            progress=lambda done, total: bar.update(done - bar.n))
    print(f"{len(answers)} studies, {len(rows)} slices; rule: {STUDY_RULE}")
    for a in answers:
        print(f"{a.study}: {a.label} (mean probability {a.probability:.3f} over {a.slices} slices)")
    if request.skipped:
        print(f"skipped {len(request.skipped)} file(s) that are not images: {', '.join(request.skipped[:5])}")
    out = Path(args.out)
    print(f"wrote {out / SLICES_CSV}, {out / STUDIES_CSV} and {out / 'overlays'}")


def run_localisation(args: argparse.Namespace, clf, items, annotations, methods: list[str], k,
                     reference: list) -> None:
    """--annotations: the lesion report of the annotated items, into --out and the model folder; with
    `reference` (the training images' (region, class) pairs), the shortcut check's place floor too."""
    import json
    from pathlib import Path

    from tqdm.auto import tqdm

    from hub.explain.batch import (
        LOCALISATION_NAME,
        annotation_root,
        write_localisation,
    )
    from hub.explain.lesion import lesion_rows, report_lines, summarise
    from hub.explain.place import place_by_path
    from hub.records import is_model_folder, record_localisation

    out = Path(args.out)
    todo = [(i.path, i.truth) for i in items if annotations.get(i.path) is not None]
    with tqdm(total=len(todo), desc="lesion", unit="image") as bar:
        rows = lesion_rows(clf.model, todo, annotations, methods, args.tolerance, k, device=clf.device,
                           transform=clf.transform, progress=lambda done, total: bar.update(done - bar.n),
                           scorecam_fill=args.scorecam_fill)
    place = place_by_path(reference, annotations, [r.path for r in rows if not r.error], args.mirror) if reference \
        else None
    report = summarise(rows, len(items) - len(todo), args.tolerance, place=place, reference_images=len(reference))
    csv_path = write_localisation(out, rows, clf.labels, methods)
    (out / LOCALISATION_NAME).write_text(json.dumps(report, indent=2) + "\n")
    name = args.split_name or annotation_root(args.images).name
    print("\n".join(report_lines(report, name)))
    print(f"wrote {csv_path} and {out / LOCALISATION_NAME}")
    if is_model_folder(args.model):
        record_localisation(args.model, name, report)
        print(f"wrote the localisation figures of '{name}' into {Path(args.model) / 'metrics.json'} and its model card")


def run_calibrate(args: argparse.Namespace) -> None:
    """The calibrate sub-command: fit or carry T, report each figure raw and scaled, write it into the folder."""
    from pathlib import Path

    from tqdm.auto import tqdm

    from hub.calibrate import calibrate_folder
    from hub.calibration import summary_line

    with tqdm(desc="logits", unit="image") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        record = calibrate_folder(args.folder, args.data, args.temperature, args.split_name, args.device, progress)
    print(f"temperature {record['temperature']:.4f}, {record['source']}")
    for name, split in record["splits"].items():
        print(summary_line(name, split))
    if record["skipped"]:
        print(f"{record['skipped']} image(s) outside the label folders were not used")
    print(f"wrote it into {Path(args.folder) / 'config.json'}, metrics.json and the model card")


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; expected failures print one line and exit 2 (hub.cli's policy)."""
    from hub.cli import run_command

    args = parser().parse_args(argv)
    return run_command(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    """The sub-command `args` names."""
    from hub.publish import pull, push

    if args.command == "explain":
        run_explain(args)
    elif args.command == "calibrate":
        run_calibrate(args)
    elif args.command == "push":
        result = push(args.folder, args.repo_id, tag=args.tag, branch=args.branch, create_pr=args.create_pr,
                      private=args.private, message=args.message)
        print(f"pushed {args.folder} -> {result.commit_url}")
        if result.tag:
            print(f"tagged {result.tag}")
        if result.pr_url:
            print(f"pull request: {result.pr_url}")
        print("load it with:\n" + result.snippet())
    else:
        repo, _, rev = args.repo.partition("@")
        folder, sha = pull(repo, args.out, revision=rev or None)
        print(f"pulled {repo}@{rev or 'main'} (commit {sha}) into {folder}")


if __name__ == "__main__":
    sys.exit(main())
