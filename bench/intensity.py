"""Does the model read the scan's brightness? Accuracy and changed answers under gain and gamma changes.

    python -m bench.intensity --model runs/mri --data runs/mri-data/val --limit 500

For up to --limit images of --data with a class folder (spread over the classes), prints the accuracy as they
are, then under each change of hub.explain.intensity.CHANGES (gain 0.8 and 1.2, gamma 0.8 and 1.25; black
stays black) its accuracy, the share of images whose predicted class changed, and how many images each class
was predicted for: a model that reads brightness as a class cue changes many answers, toward one class.
--json FILE also writes the figures. Read docs/lesion-mri.md for what the MRI models score.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run(model_dir: str, data: str, limit: int | None, out: str | None = None) -> dict:
    """Measure and print the check; returns its figures."""
    import torch

    from hub import from_pretrained
    from hub.explain.batch import collect_images, spread
    from hub.explain.intensity import intensity_check, report_lines
    from hub.images import load_image

    clf = from_pretrained(model_dir, device="cpu")
    labelled = [i for i in collect_images([data], clf.labels) if i.truth is not None]
    if not labelled:
        raise SystemExit(f"{data}: no image sits in a folder named after one of the model's classes "
                         f"({', '.join(clf.labels)}): give the class folders' parent")
    chosen = spread(labelled, limit or len(labelled))
    started = time.perf_counter()
    images = [load_image(i.path) for i in chosen]

    def predict(batch):
        with torch.no_grad():
            return clf.logits(batch).argmax(1).cpu().numpy()

    report = intensity_check(predict, images, [i.truth for i in chosen], len(clf.labels))
    print(f"{model_dir}: {clf.data_config['input_size'][-1]} px, {Path(data).name}")
    print("\n".join(report_lines(report, clf.labels)))
    print(f"measured: {len(chosen)} images x {len(report.changes) + 1} versions in "
          f"{time.perf_counter() - started:.0f} s")
    figures = report.as_dict()
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.intensity", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="model folder (python -m train) or REPO_ID[@REV]")
    p.add_argument("--data", required=True, help="class-per-folder images (the class is the folder's name)")
    p.add_argument("--limit", type=int, help="at most this many images, spread over the classes")
    p.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    a = p.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        p.error(f"--limit must be at least 1, got {a.limit}")
    run(a.model, a.data, a.limit, a.json)


if __name__ == "__main__":
    main()
