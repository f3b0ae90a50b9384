"""Does the model read the scan's brightness? Its accuracy and changed answers under fixed intensity changes.

A scanner, a protocol or a windowing choice changes a slice's gain and gamma without changing its anatomy, so a
model that reads the lesion should answer the same. The check applies each change of `CHANGES` to every image
(`hub.images.gain_gamma`: black stays black) and reports, beside the accuracy as is, each change's accuracy and
the share of images whose predicted class changed ("flips"), with bootstrap 95% intervals.

The changes are mild on purpose, of the order of the differences in a class's mean grey between the figshare
MRI set's acquisitions (gliomas 36 in the first 20% of the files, 28 in the rest; docs/mri.md). The guided
192 px model changed 16% of its validation answers under them, and called darkened slices glioma
(`python -m bench.intensity`, docs/lesion-mri.md).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from hub.display import interval_text
from hub.explain.stats import interval
from hub.images import gain_gamma


@dataclass(frozen=True)
class Change:
    """One intensity change: `gain * x ** gamma` on [0, 1] pixels."""
    name: str
    gain: float = 1.0
    gamma: float = 1.0

    def apply(self, image: Image.Image) -> Image.Image:
        x = np.asarray(image.convert("RGB"), np.float32) / 255.0
        return Image.fromarray((gain_gamma(x, self.gain, self.gamma) * 255.0 + 0.5).astype(np.uint8))


CHANGES = (Change("darker (gain 0.8)", gain=0.8), Change("brighter (gain 1.2)", gain=1.2),
           Change("gamma 0.8", gamma=0.8), Change("gamma 1.25", gamma=1.25))


@dataclass(frozen=True)
class ChangeResult:
    name: str
    accuracy: dict            # mean, low, high
    flips: dict               # share of images whose predicted class changed: mean, low, high
    predicted: tuple          # how many images each class was predicted for, under the change


@dataclass(frozen=True)
class IntensityReport:
    images: int
    accuracy: dict            # as is: mean, low, high
    predicted: tuple          # as is, per class
    truth: tuple              # per class
    changes: tuple            # ChangeResult per change

    @property
    def mean_flips(self) -> float:
        """The share of answers changed, averaged over the changes: 0 for a model blind to intensity."""
        return float(np.mean([c.flips["mean"] for c in self.changes]))

    def as_dict(self) -> dict:
        return {"images": self.images, "accuracy": self.accuracy, "predicted": list(self.predicted),
                "truth": list(self.truth), "mean_flips": round(self.mean_flips, 6),
                "changes": [{"name": c.name, "accuracy": c.accuracy, "flips": c.flips,
                             "predicted": list(c.predicted)} for c in self.changes]}


def intensity_check(predict: Callable[[list[Image.Image]], np.ndarray], images: Sequence[Image.Image],
                    truths: Sequence[int], classes: int, changes: Sequence[Change] = CHANGES,
                    batch: int = 32) -> IntensityReport:
    """`predict` maps a list of RGB images to their predicted class indices; `truths` are the true ones."""
    if not images:
        raise ValueError("the intensity check needs at least one image")
    if len(images) != len(truths):
        raise ValueError(f"{len(images)} images but {len(truths)} true classes")

    def answers(change: Change | None) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch):
            chunk = list(images[i:i + batch])
            out.append(np.asarray(predict([change.apply(im) for im in chunk] if change else chunk)))
        return np.concatenate(out).astype(int)

    y = np.asarray(truths, int)
    base = answers(None)
    count = lambda p: tuple(int(n) for n in np.bincount(p, minlength=classes))  # noqa: E731
    results = []
    for change in changes:
        p = answers(change)
        results.append(ChangeResult(change.name, interval((p == y).astype(float)),
                                    interval((p != base).astype(float)), count(p)))
    return IntensityReport(len(y), interval((base == y).astype(float)), count(base), count(y), tuple(results))


def report_lines(report: IntensityReport, labels: Sequence[str]) -> list[str]:
    """The check as printed by `python -m bench.intensity`."""
    width = max(len(c.name) for c in report.changes) + 2
    lines = [f"intensity check on {report.images} images (true class counts: "
             + ", ".join(f"{n} {label}" for n, label in zip(report.truth, labels)) + ")",
             f"{'images':<{width}}{'accuracy':<24}{'answers changed':<24}predicted " + " / ".join(labels),
             f"{'as they are':<{width}}{interval_text(report.accuracy):<24}{'':<24}"
             + " / ".join(map(str, report.predicted))]
    for c in report.changes:
        lines.append(f"{c.name:<{width}}{interval_text(c.accuracy):<24}{interval_text(c.flips):<24}"
                     + " / ".join(map(str, c.predicted)))
    lines.append(f"mean share of answers changed: {report.mean_flips:.3f} (0 for a model blind to intensity)")
    return lines
