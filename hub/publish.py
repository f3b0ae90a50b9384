"""Push a model folder to the Hub as one commit, tag retrains vN, pull a revision back.

Only an allow-list of files is published (never checkpoints or pickles); the card is re-rendered
on every push with the repo id, the revision and the metrics of earlier tags. Each push is one
`create_commit`, so the remote repo is at the old commit or the new one, never in between; files
of the previous revision that the new folder no longer has are deleted in that same commit.

Pushes at the same time: the commit names the branch head its deletions were computed from
(`parent_commit`), so the Hub refuses it (412 Precondition Failed) when another commit landed first.
The push then reads the head again, recomputes its deletions and its next vN, and tries again, at
most COMMIT_ATTEMPTS times; a `--tag auto` push whose vN another push took first (409) commits again
as the next vN. Two `--tag auto` pushes at once end as vN and vN+1, each tag holding exactly its
folder. The Hub's typed errors become `PublishError`s with plain messages; tokens never appear in them.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.card import render_card
from hub.errors import ModelLoadError, PublishError, hub_error
from hub.model import MODEL_FILES, MODEL_GLOBS, check_folder, model_files

TAG = re.compile(r"^v(\d+)$")
COMMIT_ATTEMPTS = 5  # tries of a push (or a Space deploy) while other commits keep landing on its branch first


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


def next_tag(tags: Sequence[str]) -> str:
    """The next free vN after the highest existing one (v1 when there is none)."""
    numbers = [int(m.group(1)) for t in tags if (m := TAG.match(t))]
    return f"v{max(numbers, default=0) + 1}"


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed Hub call (None when it never got an answer)."""
    from huggingface_hub.errors import HfHubHTTPError

    return getattr(exc.response, "status_code", None) if isinstance(exc, HfHubHTTPError) else None


def is_stale(exc: BaseException) -> bool:
    """True when the Hub refused a commit because its `parent_commit` is no longer the branch head (HTTP 412)."""
    return http_status(exc) == 412


def files_at(api, repo_id: str, commit: str | None, repo_type: str | None = None) -> set[str]:
    """The files of `commit` (nothing for a branch without one): what a commit on top of it deletes from."""
    return set(api.list_repo_files(repo_id, revision=commit, repo_type=repo_type)) if commit else set()


def holds_exactly(api, repo_id: str, commit: str, wanted: set[str], repo_type: str | None = None) -> bool:
    """Whether `commit` has exactly the files `wanted` (.gitattributes aside). A commit that create_commit returns is
    not always made by it: when every addition is already there and nothing is deleted, it skips the commit and
    returns the branch head as it is, parent_commit unchecked, which may carry files another commit added after
    this one's head was read."""
    return files_at(api, repo_id, commit, repo_type) - {".gitattributes"} == wanted - {".gitattributes"}


def moved_on(repo_id: str, revision: str, landed: Sequence = ()) -> PublishError:
    """A push or deploy that lost the race for `revision` COMMIT_ATTEMPTS times; says what landed, if anything."""
    done = (f"{landed[-1].commit_url} was committed but another push took its tag" if landed
            else "nothing was committed")
    return PublishError(f"{repo_id}: other commits kept landing on {revision} first ({COMMIT_ATTEMPTS} tries, "
                        f"each beaten by another commit or tag); {done}. Run the same command again")


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
        split = "test" if metrics.get("test") else "validation"  # the card names the split of each figure
        m = metrics.get(split) or {}
        rows.append({"revision": tag, "split": split, "accuracy": m.get("accuracy"), "f1_macro": m.get("f1_macro"),
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
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, repo_id, revision) from None
    files = model_files(folder)  # hub.model's one list: never a pickle or a checkpoint
    metrics = json.loads((folder / "metrics.json").read_text())
    train_config = json.loads((folder / "train_config.json").read_text())
    landed = []  # commits of this push that landed, but whose vN another push tagged first
    for _ in range(COMMIT_ATTEMPTS):
        head, tags, remote, previous = _remote_state(api, repo_id, revision, committed=bool(landed))
        if tag == "auto":
            this_tag = next_tag(tags)
        elif tag in tags:
            raise PublishError(f"{repo_id}: tag {tag} already exists; tags are never moved. Use --tag auto "
                               f"(next is {next_tag(tags)})")
        else:
            this_tag = tag
        card = render_card(config, metrics, train_config, repo_id=repo_id, revision=this_tag or revision,
                           previous=previous)
        ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel))
               for rel in files if rel != "README.md"]
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=str(card).encode()))
        keep = set(files) | {"README.md", ".gitattributes"}
        ops += [CommitOperationDelete(path_in_repo=rel) for rel in sorted(remote - keep)]
        try:
            info = api.create_commit(repo_id, operations=ops, revision=revision, create_pr=create_pr,
                                     parent_commit=head,
                                     commit_message=message or (f"Publish {this_tag}" if this_tag else "Publish model"))
            exact = create_pr or info.oid == head or holds_exactly(api, repo_id, info.oid, keep)
        except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
            if is_stale(exc):
                continue  # another commit landed first: read the head again
            raise hub_error(exc, repo_id, revision, committed=bool(landed)) from None
        if not exact:
            continue  # nothing was committed (all there already), but another commit added files: read again
        if this_tag and not create_tag(api, repo_id, this_tag, info, retry=tag == "auto"):
            landed.append(info)
            continue  # another push took this vN between our commit and our tag: commit again as the next one
        return PushResult(repo_id=repo_id, commit=info.oid, commit_url=info.commit_url,
                          revision=this_tag or info.oid, tag=this_tag, pr_url=info.pr_url)
    raise moved_on(repo_id, revision, landed)


def _remote_state(api, repo_id: str, revision: str, committed: bool) -> tuple[str | None, list[str], set[str],
                                                                               list[dict]]:
    """(head commit of `revision`, tags, the head's files, the earlier tags' metrics), read together for one try."""
    try:
        refs = api.list_repo_refs(repo_id)
        tags = [t.name for t in refs.tags]
        head = next((b.target_commit for b in refs.branches if b.name == revision), None)
        return head, tags, files_at(api, repo_id, head), _previous_revisions(api, repo_id, tags)
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        raise hub_error(exc, repo_id, revision, committed=committed) from None


def create_tag(api, repo_id: str, tag: str, commit, retry: bool = False) -> bool:
    """Tag the commit a push just made (True). With `retry`, False when the tag was taken meanwhile (HTTP 409),
    for the push to try again; any other failure says the commit landed and how to tag it by hand."""
    try:
        api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=f"model {tag}")
        return True
    except Exception as exc:  # noqa: BLE001 - any Hub or transport failure becomes one plain message
        if retry and http_status(exc) == 409:
            return False
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
