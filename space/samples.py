"""Sample images for the Examples tab: the `examples/` folder of the served model revision.

They come from the served revision itself (a local folder's `examples/`, or the Hub repo's
`examples/` at the served commit), so a Space needs nothing but `hub/` to show them. Missing
examples give an empty tab, never an error.

Gradio serves a file only from its working folder, its temp folder or `allowed_paths`; on a Space
the Hub cache lives under the home folder, which is none of those, so `allowed_paths(examples)`
names the folders the examples live in (snapshot links and the blobs they point at).
"""
from __future__ import annotations

import logging
from pathlib import Path

from hub.images import find_images
from space.serving import Served

log = logging.getLogger(__name__)
MAX_SAMPLES = 12


def folder_images(folder: Path) -> list[tuple[str, str]]:
    """(path, caption) for the image files directly in `folder`, sorted by name."""
    if not folder.is_dir():
        return []
    # the gallery is drawn by the browser, which cannot draw DICOM
    return [(str(p), p.stem) for p in find_images(folder, recursive=False, dicom=False)]


def model_examples(served: Served) -> list[tuple[str, str]]:
    """The `examples/` images of the served model folder or Hub revision."""
    if not served.ready:
        return []
    if not served.is_hub:
        return folder_images(Path(served.source) / "examples")
    revision = served.commit or served.revision
    from huggingface_hub import get_cached_repo_tree, snapshot_download
    from huggingface_hub.errors import CachedRepoTreeNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    from hub.errors import network_errors

    try:
        try:  # the file list cached when the model was fetched says, offline, whether there is anything to get
            if not any(f.path.startswith("examples/") for f in get_cached_repo_tree(served.source, revision=revision)):
                return []
        except CachedRepoTreeNotFoundError:  # no cached listing: ask the Hub
            pass
        folder = snapshot_download(served.source, revision=revision, allow_patterns=["examples/*"])
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, *network_errors()) as exc:
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
