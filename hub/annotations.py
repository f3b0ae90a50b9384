"""Expert annotations beside the images: YOLO boxes, COCO boxes and binary masks, read into one `Region` each.

    found = read_annotations("boxes/", images, root="data/")   # images: the files under root
    found.regions[path].mask((h, w), grow=15)                  # bool h x w: the region grown by 15 px
    found.missing                                              # images without an annotation (skipped)

Matching is by the image's path relative to `root`, without its extension:
- YOLO: `DIR/<rel>.txt`, one `id cx cy w h` line per box (fractions of the image; `id` is ignored:
  the class comes from the folder); an empty file means "no region" and counts as missing;
- masks: `DIR/<rel>.<image ext>` or `DIR/<rel>_mask.<image ext>` (the public ultrasound sets' naming),
  the same size as the image, region where a pixel is above half the mask's maximum (0/1 and 0/255 alike);
- COCO: a `.json` file (or the only `.json` in DIR) whose `images[].file_name` is the relative path (or a
  file name unique among the images) and whose `annotations[].bbox` is `[x, y, w, h]` in pixels.
An image without an annotation is counted and skipped, never guessed. An annotation that belongs to no
image, or that cannot be read, is an `AnnotationError` naming the file and what to do: nothing is half-read.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hub.errors import AnnotationError
from hub.images import is_image_file, load_image

MASK_SUFFIX = "_mask"
# Files an annotation folder may hold that are not annotations (YOLO exports ship classes.txt).
# (evidence.json: the synthetic set's boxes, beside its images and their YOLO files: python -m train.synthetic)
NOT_ANNOTATIONS = ("classes.txt", "data.yaml", "readme.md", "readme.txt", "license", "license.txt", "evidence.json")
# A box edge may sit this far outside [0, 1] (rounding in YOLO exports); beyond it the box is refused.
EDGE_SLACK = 1e-3

Box = tuple[float, float, float, float]   # x0, y0, x1, y1 as fractions of the image's width and height


@dataclass(frozen=True)
class Region:
    """One image's annotated region: boxes (fractions of the image) or a boolean mask at the image's size."""

    source: str                              # the annotation file, for messages
    boxes: tuple[Box, ...] = ()
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)  # bool H x W of a mask file

    def mask(self, size: tuple[int, int], grow: float = 0.0) -> np.ndarray:
        """Bool (H, W) at `size`: the region, grown by `grow` pixels (Euclidean) of that size."""
        h, w = size
        if self.pixels is not None:
            base = self.pixels
            if base.shape != (h, w):
                img = Image.fromarray(base.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
                base = np.asarray(img) > 127
            return grow_mask(base, grow) if grow > 0 else base.copy()
        ys = np.arange(h, dtype=np.float64)[:, None] + 0.5   # pixel centres
        xs = np.arange(w, dtype=np.float64)[None, :] + 0.5
        out = np.zeros((h, w), dtype=bool)
        for x0, y0, x1, y1 in self.boxes:
            dx = np.maximum(np.maximum(x0 * w - xs, 0.0), xs - x1 * w)
            dy = np.maximum(np.maximum(y0 * h - ys, 0.0), ys - y1 * h)
            out |= dx ** 2 + dy ** 2 <= max(grow, 0.0) ** 2
            # A box thinner than a pixel holds no pixel centre: it still covers the pixel its centre is in, so
            # no region is ever empty (an empty one has no energy share and a ratio of 0 / 0).
            out[min(int((y0 + y1) / 2 * h), h - 1), min(int((x0 + x1) / 2 * w), w - 1)] = True
        return out

    def area_share(self, size: tuple[int, int]) -> float:
        """The fraction of the image the region covers (ungrown)."""
        return float(self.mask(size).mean())


def grow_mask(base: np.ndarray, grow: float) -> np.ndarray:
    """Bool `base` grown by `grow` pixels (Euclidean: every pixel within `grow` of a region pixel's centre).

    A dilation by a disc, done as an FFT convolution: numpy only, because the Space ships `hub/` without scipy;
    as fast as scipy's distance transform at these sizes (the whole padded image, whatever the radius)."""
    r = int(np.floor(grow))
    if r < 1 or not base.any():
        return base.copy()
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (yy ** 2 + xx ** 2 <= grow ** 2).astype(np.float64)
    h, w = base.shape
    shape = (h + 2 * r, w + 2 * r)   # the full convolution's size: no wrap-around
    counts = np.fft.irfft2(np.fft.rfft2(base.astype(np.float64), shape) * np.fft.rfft2(disc, shape), shape)
    return counts[r:r + h, r:r + w] > 0.5   # counts of region pixels in the disc: whole numbers


@dataclass(frozen=True)
class Annotations:
    """Regions by image path, and the images that have none."""

    regions: dict[Path, Region]
    missing: tuple[Path, ...]
    source: str

    def get(self, path: Path) -> Region | None:
        """The region of `path`, or None when it has no annotation."""
        return self.regions.get(Path(path))

    def summary(self) -> str:
        """One line: how many images are annotated and how many were skipped."""
        return (f"{self.source}: {len(self.regions)} annotated image(s), {len(self.missing)} without an "
                "annotation (skipped)")


def _key(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header when PIL can read one (DICOM: decoded)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            return h, w
    except Exception:  # noqa: BLE001 - not a PIL format (DICOM): the project's loader says why if it fails
        img = load_image(path)
        return img.height, img.width


def read_annotations(source: str | os.PathLike, images: Sequence[Path], root: str | os.PathLike,
                     role: str = "--annotations") -> Annotations:
    """The region of every image in `images` (files under `root`) from the annotations at `source`."""
    source, root = Path(source), Path(root)
    if not source.exists():
        raise AnnotationError(f"{role} {source}: no such file or folder")
    by_key: dict[str, Path] = {}
    for p in images:
        try:
            by_key[_key(Path(p).relative_to(root))] = Path(p)
        except ValueError:
            raise AnnotationError(f"{role}: image {p} is not under {root}") from None
    if source.is_file() or _only_json(source):
        coco = source if source.is_file() else next(source.glob("*.json"))
        regions = _read_coco(coco, by_key, role)
    else:
        regions = _read_folder(source, by_key, role)
    if not regions:
        raise AnnotationError(f"{role} {source}: matches none of the {len(images)} image(s) under {root}; "
                              "annotations are matched by path relative to the image folder "
                              "(e.g. <class>/<name>.txt for <class>/<name>.jpg)")
    missing = tuple(p for p in images if Path(p) not in regions)
    return Annotations(regions, missing, str(source))


def _only_json(folder: Path) -> bool:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(p.suffix.lower() == ".json" for p in files) and len(files) == 1


def _read_folder(folder: Path, by_key: dict[str, Path], role: str) -> dict[Path, Region]:
    # Box files may sit beside the images (DIR is the image folder): the images themselves are not masks.
    images = {p.resolve() for p in by_key.values()}
    regions: dict[Path, Region] = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts) or f.name.lower() in NOT_ANNOTATIONS:
            continue
        suffix = f.suffix.lower()
        is_mask = suffix != ".txt" and is_image_file(f)   # the project's one rule for what is an image file
        if is_mask and f.resolve() in images:
            continue
        if not is_mask and suffix != ".txt":
            raise AnnotationError(f"{role}: {f} is neither a YOLO .txt box file nor a mask image; remove it "
                                  "or point the option at a folder of annotations only")
        key = _key(rel)
        if suffix != ".txt" and key.endswith(MASK_SUFFIX) and key not in by_key:
            key = key[: -len(MASK_SUFFIX)]
        image = by_key.get(key)
        if image is None:
            raise AnnotationError(f"{role}: {f} has no image {key}.* under the image folder; remove it, or "
                                  "point the option at the annotations of exactly these images")
        if image in regions:
            raise AnnotationError(f"{role}: {f} and {regions[image].source} both annotate {image}; keep one")
        region = _read_yolo(f, role) if suffix == ".txt" else _read_mask(f, image, role)
        if region is not None:
            regions[image] = region
    return regions


def _read_yolo(path: Path, role: str) -> Region | None:
    boxes = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError
            _, cx, cy, w, h = int(float(parts[0])), *map(float, parts[1:])
        except ValueError:
            raise AnnotationError(f"{role}: {path} line {n}: not a YOLO box 'class cx cy w h' ({line.strip()[:60]!r}); "
                                  "fix the line or remove the file") from None
        box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        outside = min(box) < -EDGE_SLACK or max(box) > 1 + EDGE_SLACK or not all(map(np.isfinite, box))
        if not (w > 0 and h > 0) or outside:
            raise AnnotationError(f"{role}: {path} line {n}: box outside the image (cx {cx}, cy {cy}, w {w}, h {h}: "
                                  "YOLO values are fractions of the image, edges within [0, 1]); fix or remove it")
        boxes.append(tuple(min(max(v, 0.0), 1.0) for v in box))
    return Region(str(path), tuple(boxes)) if boxes else None


def _read_mask(path: Path, image: Path, role: str) -> Region:
    try:
        with Image.open(path) as img:
            plain = img.mode in ("L", "1", "I", "I;16", "F")
            arr = np.asarray(img if plain else img.convert("L"), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same message
        raise AnnotationError(f"{role}: {path}: not a readable mask image ({type(exc).__name__}); "
                              "re-export it as a PNG") from None
    size = image_size(image)
    if arr.shape != size:
        raise AnnotationError(f"{role}: {path} is {arr.shape[1]}x{arr.shape[0]} but its image {image} is "
                              f"{size[1]}x{size[0]}; a mask must have its image's size")
    top = arr.max() if arr.size else 0
    if not top > 0:
        raise AnnotationError(f"{role}: {path} is all zero (no region); an image without a lesion has no mask "
                              "file: delete it")
    return Region(str(path), pixels=arr > top / 2)


def _read_coco(path: Path, by_key: dict[str, Path], role: str) -> dict[Path, Region]:
    try:
        data = json.loads(path.read_text())
        images = {int(im["id"]): im for im in data["images"]}
        annotations = data["annotations"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AnnotationError(f"{role}: {path}: not a COCO file with 'images' and 'annotations' "
                              f"({type(exc).__name__}: {exc})") from None
    names: dict[str, list[str]] = {}
    for key in by_key:
        names.setdefault(Path(key).name, []).append(key)
    boxes: dict[Path, list[Box]] = {}
    for ann in annotations:
        if not isinstance(ann, dict):
            raise AnnotationError(f"{role}: {path}: an entry of 'annotations' is not an object ({ann!r:.40}); "
                                  "fix the file")
        im = images.get(_coco_id(ann.get("image_id")))
        if im is None:
            raise AnnotationError(f"{role}: {path}: annotation {ann.get('id')} names image_id "
                                  f"{ann.get('image_id')!r}, which is not in its 'images'; fix the file")
        image = _coco_image(str(im.get("file_name", "")), by_key, names)
        if image is None:
            raise AnnotationError(f"{role}: {path} names image {im.get('file_name')!r}, which is not under the image "
                                  "folder; remove it from the file or add the image")
        try:
            x, y, w, h = map(float, ann["bbox"])
            width, height = float(im["width"]), float(im["height"])
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{role}: {path}: annotation {ann.get('id')} needs 'bbox' [x, y, w, h] and its "
                                  "image's 'width' and 'height'") from None
        box = (x / width, y / height, (x + w) / width, (y + h) / height)
        if not (w > 0 and h > 0) or min(box) < -EDGE_SLACK or max(box) > 1 + EDGE_SLACK:
            raise AnnotationError(f"{role}: {path}: annotation {ann.get('id')}: bbox {ann['bbox']} lies outside "
                                  f"its {width:g}x{height:g} image; fix it")
        boxes.setdefault(image, []).append(tuple(min(max(v, 0.0), 1.0) for v in box))
    return {image: Region(str(path), tuple(b)) for image, b in boxes.items()}


def _coco_id(value) -> int | None:
    """An image id as COCO files write it (a number, sometimes as a string); None if it is neither."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _coco_image(file_name: str, by_key: dict[str, Path], names: dict[str, list[str]]) -> Path | None:
    key = Path(file_name).with_suffix("").as_posix()
    if key in by_key:
        return by_key[key]
    same = names.get(Path(key).name, [])
    return by_key[same[0]] if len(same) == 1 else None
