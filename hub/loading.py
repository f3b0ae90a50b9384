"""from_pretrained: a local model folder or a Hub repo at a revision -> Classifier.

Hub sources are downloaded with `snapshot_download` (only config.json and model.safetensors, never a
pickle: a repo that has only pickled weights is refused from its file list), then loaded exactly like
a local folder, so both paths run the same checks. The Hub's typed errors
become `ModelLoadError`s with plain messages here, at the edge.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from hub.classifier import Classifier
from hub.errors import ModelLoadError, download_errors, load_error, network_errors
from hub.model import CONFIG_NAME, PICKLE_NAMES, WEIGHTS_NAME, load_local, no_weights, read_config, temperature_of


def split_revision(source: str, revision: str | None = None) -> tuple[str, str | None]:
    """'org/repo@v2' -> ('org/repo', 'v2'); an explicit `revision` must agree with the suffix."""
    if "@" in source and not Path(source).exists():
        source, _, suffix = source.partition("@")
        if revision is not None and revision != suffix:
            raise ModelLoadError(f"two revisions given: '@{suffix}' and revision={revision!r}")
        revision = suffix
    return source, revision


def is_repo_id(source: str) -> bool:
    """True for 'org/repo' ids (huggingface_hub's own rules) that do not name an existing local path."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if source.count("/") != 1 or Path(source).exists():  # a bare 'repo' is a local name here, not a model id
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def download(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> tuple[Path, str]:
    """Fetch config.json + model.safetensors of `repo_id@revision`; return (snapshot folder, commit sha)."""
    from huggingface_hub import snapshot_download

    where = f"{repo_id}@{revision or 'main'}"
    fetch = dict(revision=revision, cache_dir=cache_dir, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    try:
        try:
            folder = Path(snapshot_download(repo_id, **fetch))
        except network_errors():
            # huggingface_hub falls back to the cache by itself only when it cannot connect; a connection
            # dropped mid-answer lands here: serve this revision's cached snapshot if there is one.
            folder = Path(snapshot_download(repo_id, local_files_only=True, **fetch))
    except download_errors() as exc:
        raise load_error(exc, repo_id, revision) from None
    commit = folder.name if re.fullmatch(r"[0-9a-f]{40}", folder.name) else None
    if (folder / CONFIG_NAME).is_file() and not (folder / WEIGHTS_NAME).is_file():
        raise no_weights(where, pickles_in(repo_id, commit or revision, cache_dir))
    return folder, commit or ""


def pickles_in(repo_id: str, revision: str | None, cache_dir: str | None) -> list[str]:
    """The pickled weight files of a revision, from the file list `snapshot_download` cached (nothing downloaded)."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        names = {entry.path for entry in get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)}
    except CachedRepoTreeNotFoundError:
        return []
    return [name for name in PICKLE_NAMES if name in names]


def from_pretrained(source: str | Path, revision: str | None = None, device: str | torch.device | None = "auto",
                    cache_dir: str | None = None) -> Classifier:
    """Load a model folder, or a Hub repo id ('org/repo', optionally '@rev') at `revision`, as a Classifier."""
    source = str(source)
    source, revision = split_revision(source, revision)
    if is_repo_id(source):
        folder, commit = download(source, revision, cache_dir)
        return Classifier(load_local(folder), device=device, source=source, revision=revision or "main",
                          commit=commit or None, temperature=temperature_of(read_config(folder)))
    if revision is not None:
        raise ModelLoadError(f"{source}: a revision ({revision}) was given but this is a local folder, "
                             "not a Hub repo id")
    if not Path(source).exists():
        raise ModelLoadError(f"{source}: no such folder, and not a Hub repo id of the form 'org/name'")
    return Classifier(load_local(source), device=device, source=str(Path(source).resolve()),
                      temperature=temperature_of(read_config(Path(source))))
