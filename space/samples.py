"""Sample images for the Examples tab: the model's own `examples/` folder, plus synthetic ones.

Model examples come from the served revision (a local folder's `examples/`, or the Hub repo's
`examples/` at the served commit). Synthetic images are drawn by `train.synthetic` when it is
importable (running from the repository); a deployed Space only has `hub/`, so it shows the
model repo's examples. Every source is optional: a missing one gives fewer samples, never an error.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from hub.dicom import DICOM_SUFFIXES
from hub.images import image_extensions
from serving import Served

log = logging.getLogger(__name__)
MAX_SAMPLES = 12


def folder_images(folder: Path) -> list[tuple[str, str]]:
    """(path, caption) for the image files directly in `folder`, sorted by name."""
    if not folder.is_dir():
        return []
    exts = image_extensions() - set(DICOM_SUFFIXES)  # the gallery is drawn by the browser, which cannot draw DICOM
    return [(str(p), p.stem) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in exts]


def model_examples(served: Served) -> list[tuple[str, str]]:
    """The `examples/` images of the served model folder or Hub revision."""
    if not served.ready:
        return []
    if not served.is_hub:
        return folder_images(Path(served.source) / "examples")
    revision = served.commit or served.revision
    try:
        from huggingface_hub import get_cached_repo_tree, snapshot_download

        try:  # the file list cached when the model was fetched says, offline, whether there is anything to get
            if not any(f.path.startswith("examples/") for f in get_cached_repo_tree(served.source, revision=revision)):
                return []
        except Exception:  # noqa: BLE001 - no cached listing: ask the Hub
            pass
        folder = snapshot_download(served.source, revision=revision, allow_patterns=["examples/*"])
    except Exception as exc:  # noqa: BLE001 - samples are a convenience; the app works without them
        log.info("no examples/ from %s: %s", served.source, exc)
        return []
    return folder_images(Path(folder) / "examples")


def synthetic_examples(out: Path, labels: list[str], size: int = 128, seed: int = 7) -> list[tuple[str, str]]:
    """One synthetic image per class the built-in generator knows (all of its first three if none)."""
    try:
        import numpy as np

        from train.synthetic import PATTERNS, make_image
    except ImportError:  # a deployed Space ships hub/ only
        return []
    names = [name for name in labels if name in PATTERNS] or list(PATTERNS)[:3]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    samples = []
    for name in names:
        path = out / f"synthetic_{name}.png"
        make_image(name, size, rng)[0].save(path)
        samples.append((str(path), f"synthetic {name}"))
    return samples


def collect(served: Served, out: Optional[Path]) -> list[tuple[str, str]]:
    """Model examples first, then synthetic ones written under `out` (None: no synthetic ones)."""
    samples = model_examples(served)
    if out is not None:
        samples += synthetic_examples(out, served.labels)
    return samples[:MAX_SAMPLES]
