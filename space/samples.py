"""Sample images for the Examples tab: the `examples/` folder of the served model revision, and the
expert regions annotated beside them.

They come from the served revision itself (a local folder's `examples/`, or the Hub repo's
`examples/` at the served commit), so a Space needs nothing but `hub/` to show them. Missing
examples give an empty tab, never an error.

Beside an example `x.png` may lie its annotation (`hub.annotations`): `x.txt` (YOLO boxes) or
`x_mask.png` (a mask). It travels with the image (published, downloaded) but is never shown as a sample;
`ExpertRegions` knows each annotated example by its bytes, so the region is found again whichever path
Gradio hands the request (its cache copy of a clicked sample, or the same file uploaded).

Gradio serves a file only from its working folder, its temp folder or `allowed_paths`; on a Space
the Hub cache lives under the home folder, which is none of those, so `allowed_paths(examples)`
names the folders the examples live in (snapshot links and the blobs they point at).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from hub.annotations import MASK_SUFFIX, Region, read_annotations
from hub.errors import AnnotationError
from hub.images import find_images
from space.serving import Served

log = logging.getLogger(__name__)
MAX_SAMPLES = 12


def folder_images(folder: Path) -> list[tuple[str, str]]:
    """(path, caption) for the image files directly in `folder`, sorted by name; an image's mask
    (`x_mask.png` beside `x.png`) is its annotation, not a sample."""
    if not folder.is_dir():
        return []
    # the gallery is drawn by the browser, which cannot draw DICOM
    images = find_images(folder, recursive=False, dicom=False)
    stems = {p.stem for p in images}
    return [(str(p), p.stem) for p in images
            if not (p.stem.endswith(MASK_SUFFIX) and p.stem[: -len(MASK_SUFFIX)] in stems)]


def model_examples(served: Served) -> list[tuple[str, str]]:
    """The `examples/` images of the served model folder or Hub revision."""
    if not served.ready:
        return []
    if not served.is_hub:
        return folder_images(Path(served.source) / "examples")
    revision = served.commit or served.revision
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    from hub.errors import download_errors

    try:
        try:  # the file list cached when the model was fetched says, offline, whether there is anything to get
            if not any(f.path.startswith("examples/") for f in get_cached_repo_tree(served.source, revision=revision)):
                return []
        except CachedRepoTreeNotFoundError:  # no cached listing: ask the Hub
            pass
        folder = snapshot_download(served.source, revision=revision, allow_patterns=["examples/*"])
    except (*download_errors(), OSError) as exc:
        # Samples are a convenience: the app works without them.
        log.info("no examples/ from %s: %s", served.source, exc)
        return []
    return folder_images(Path(folder) / "examples")


def collect(served: Served) -> list[tuple[str, str]]:
    """(path, caption) of the served model's sample images, at most MAX_SAMPLES."""
    return model_examples(served)[:MAX_SAMPLES]


def allowed_paths(examples: list[tuple[str, str]]) -> list[str]:
    """Folders Gradio must be allowed to serve for `examples`: each file's folder and its link target's."""
    folders = set()
    for path, _ in examples:
        folders.add(str(Path(path).parent.absolute()))
        folders.add(str(Path(path).resolve().parent))
    return sorted(folders)


def annotation_files(image: Path) -> list[Path]:
    """The annotation files beside `image`: `<stem>.txt` (YOLO boxes) and `<stem>_mask.<ext>` (a mask)."""
    boxes = image.with_name(f"{image.stem}.txt")
    masks = [p for p in find_images(image.parent, recursive=False) if p.stem == f"{image.stem}{MASK_SUFFIX}"]
    return [boxes, *masks] if boxes.is_file() else masks


def example_region(image: Path) -> Optional[Region]:
    """The expert region annotated beside `image`, or None (no annotation, or one that cannot be read: logged)."""
    files = annotation_files(image)
    if not files:
        return None
    # read_annotations takes a whole folder, all or nothing, and refuses a file it cannot match: given this
    # image's files alone, a broken or stray file in examples/ costs only its own example's region
    with tempfile.TemporaryDirectory(prefix="annotation-") as tmp:
        for f in files:
            shutil.copyfile(f, Path(tmp) / f.name)
        try:
            return read_annotations(tmp, [image], root=image.parent, role="examples/").get(image)
        except AnnotationError as exc:  # a sample's box is a convenience: the app works without it
            log.warning("no expert region for %s: %s", image.name, exc)
            return None


def digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ExpertRegions:
    """The expert regions of the annotated examples, found again from any copy of an example's file."""

    def __init__(self, examples: list[tuple[str, str]]):
        self.by_digest: dict[str, Region] = {}
        self.sizes: set[int] = set()
        for path, _ in examples:
            region = example_region(Path(path))
            if region is not None:
                self.by_digest[digest(path)] = region
                self.sizes.add(Path(path).stat().st_size)

    def __len__(self) -> int:
        return len(self.by_digest)

    def of(self, path: Optional[str]) -> Optional[Region]:
        """The region of the example whose bytes `path` holds; None for any other file (an upload)."""
        if not self.by_digest or path is None or str(path) == "":
            return None
        try:
            if Path(path).stat().st_size not in self.sizes:  # most uploads are told apart without reading them
                return None
            return self.by_digest.get(digest(path))
        except OSError:  # the request's own check reports an unreadable file
            return None
