"""Push a model folder to the Hub as one commit, tag retrains vN, pull a revision back.

Only an allow-list of files is published (never checkpoints or pickles); the card is re-rendered
on every push with the repo id, the revision and the metrics of earlier tags. Each push is one
`create_commit`, so the remote repo is at the old commit or the new one, never in between; files
of the previous revision that the new folder no longer has are deleted in that same commit.
The Hub's typed errors become `PublishError`s with plain messages here; tokens never appear in them.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.card import render_card
from hub.errors import ModelLoadError, PublishError, hub_error
from hub.model import MODEL_FILES, MODEL_GLOBS, check_folder

NEVER = ("*.pt", "*.pth", "*.bin", "*.ckpt", "*.pkl", "*.pickle", "checkpoints/*")
TAG = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class PushResult:
    """What a push made: the commit, its URL, and the tag or branch that points at it."""

    repo_id: str
    commit: str
    commit_url: str
    revision: str
    tag: str | None
    pr_url: str | None = None

    def snippet(self) -> str:
        """Ready-to-paste code that loads exactly this revision."""
        return (f'timm.create_model("hf-hub:{self.repo_id}@{self.revision}", pretrained=True)\n'
                f'from hub import from_pretrained; clf = from_pretrained("{self.repo_id}", revision="{self.revision}")')


def publishable_files(folder: str | Path) -> list[str]:
    """Relative paths of the files of `folder` that a push uploads, sorted."""
    folder = Path(folder)
    found = [name for name in MODEL_FILES if (folder / name).is_file()]
    for pattern in MODEL_GLOBS:
        for path in sorted(folder.glob(pattern)):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and not path.name.startswith(".") and not any(fnmatch.fnmatch(rel, n) for n in NEVER):
                found.append(rel)
    return sorted(found)


def next_tag(tags: Sequence[str]) -> str:
    """The next free vN after the highest existing one (v1 when there is none)."""
    numbers = [int(m.group(1)) for t in tags if (m := TAG.match(t))]
    return f"v{max(numbers, default=0) + 1}"


def resolve_token(token: str | None) -> str:
    """The explicit token, else the logged-in one (HF_TOKEN or `hf auth login`); refuse when there is none."""
    from huggingface_hub import get_token

    token = token if token is not None else get_token()
    if not token or not token.strip():
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return token.strip()


def _previous_revisions(api, repo_id: str, tags: Sequence[str]) -> list[dict]:
    """Metrics of every earlier vN tag, for the card's history table."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    rows = []
    for tag in sorted((t for t in tags if TAG.match(t)), key=lambda t: int(t[1:])):
        try:
            path = hf_hub_download(repo_id, "metrics.json", revision=tag, token=api.token)
        except EntryNotFoundError:
            continue
        metrics = json.loads(Path(path).read_text())
        m = metrics.get("test") or metrics.get("validation") or {}
        rows.append({"revision": tag, "accuracy": m.get("accuracy"), "f1_macro": m.get("f1_macro"),
                     "auc_macro": m.get("auc_macro"),
                     "commit": Path(path).parent.name})  # the cache keeps each file under snapshots/<commit>/
    return rows


def push(folder: str | Path, repo_id: str, tag: str | None = None, branch: str | None = None,
         create_pr: bool = False, private: bool = False, message: str | None = None,
         token: str | None = None) -> PushResult:
    """Upload the publishable files of `folder` to `repo_id` as one commit; optionally tag it."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    try:
        config = check_folder(folder)
    except ModelLoadError as exc:
        raise PublishError(f"not pushing: {exc}") from None
    for name in ("metrics.json", "train_config.json"):
        if not (folder / name).is_file():
            raise PublishError(f"not pushing: {folder} has no {name}; push a folder written by `python -m train`")
    if tag is not None and tag != "auto" and not TAG.match(tag):
        raise PublishError(f"--tag must be 'auto' or of the form vN (v1, v2, ...), got {tag!r}")
    if tag is not None and create_pr:  # the card would name a tag that nothing creates
        raise PublishError("--tag cannot be combined with --create-pr: a pull request's commit is not on main yet; "
                           "open the pull request without --tag, merge it, then push or tag the merged commit")
    api = HfApi(token=resolve_token(token))
    revision = branch or "main"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch and branch != "main":
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        refs = api.list_repo_refs(repo_id)
        tags = [t.name for t in refs.tags]
        if tag == "auto":
            tag = next_tag(tags)
        elif tag in tags:
            raise PublishError(f"{repo_id}: tag {tag} already exists; tags are never moved. Use --tag auto "
                               f"(next is {next_tag(tags)})")
        has_commits = any(b.name == revision for b in refs.branches)
        remote = set(api.list_repo_files(repo_id, revision=revision)) if has_commits else set()
        previous = _previous_revisions(api, repo_id, tags)
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, repo_id, revision) from None

    files = publishable_files(folder)
    card = render_card(config, json.loads((folder / "metrics.json").read_text()),
                       json.loads((folder / "train_config.json").read_text()),
                       repo_id=repo_id, revision=tag or revision, previous=previous)
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel))
           for rel in files if rel != "README.md"]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
    keep = set(files) | {"README.md", ".gitattributes"}
    ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - keep)]
    try:
        info = api.create_commit(repo_id, operations=ops, revision=revision, create_pr=create_pr,
                                 commit_message=message or (f"Publish {tag}" if tag else "Publish model"))
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, repo_id, revision) from None
    if tag:
        create_tag(api, repo_id, tag, info)
    return PushResult(repo_id=repo_id, commit=info.oid, commit_url=info.commit_url, revision=tag or info.oid,
                      tag=tag, pr_url=info.pr_url)


def create_tag(api, repo_id: str, tag: str, commit) -> None:
    """Tag the commit a push just made; a failure says the commit landed and how to tag it by hand."""
    try:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=f"model {tag}")
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise PublishError(f"{commit.commit_url} was committed but tagging it {tag} failed "
                           f"({hub_error(exc, repo_id, committed=True)}); tag it with "
                           f"`huggingface_hub.create_tag('{repo_id}', tag='{tag}', revision='{commit.oid}')`") from None


def pull(repo_id: str, out: str | Path, revision: str | None = None, token: str | None = None) -> tuple[Path, str]:
    """Download the publishable files of `repo_id@revision` into `out`; return (folder, commit sha)."""
    from huggingface_hub import HfApi, snapshot_download

    try:
        sha = HfApi(token=token).model_info(repo_id, revision=revision).sha
        path = snapshot_download(repo_id, revision=sha, local_dir=str(out), token=token,
                                 allow_patterns=[*MODEL_FILES, *MODEL_GLOBS])
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, repo_id, revision) from None
    return Path(path), sha
