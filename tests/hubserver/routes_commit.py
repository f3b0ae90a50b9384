"""Writing: commits (with their preupload step), branches and tags.

    POST   /api/{type}s/{repo}/preupload/{rev}   says "lfs" (>= 10 MiB, .gitattributes, binary) or "regular" per
                                                 file, and its current oid
    POST   /api/{type}s/{repo}/commit/{rev}      ndjson body; `?create_pr=1` opens refs/pr/N; a header
                                                 `parentCommit` that is not the branch head: 412 Precondition Failed
    POST   /api/{type}s/{repo}/branch/{branch}
    POST   /api/{type}s/{repo}/tag/{rev}

A commit is all or nothing: its operations are applied to a copy of the parent's file map, blobs are stored, and
only then is the ref moved (one `os.replace`), under the server's write lock.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .auth import USER, require
from .errors import HubError, revision_not_found
from .http import REPO_API, Request, Response, is_true, json_response, route
from .listing import matches_any
from .storage import REF_NAME_RE, SHA256_RE, Repo

if TYPE_CHECKING:
    from .server import HubServer

MAX_REGULAR_FILE_SIZE = 10 * 1024 * 1024  # the Hub refuses regular (non-LFS) files above 10 MiB
# The client sends each file's first 512 bytes (`sample`) so the Hub can tell binary from text: binary files go
# through LFS/Xet whatever their size, and a commit that carries one inline is refused ("Your push was rejected
# because it contains binary files"). The Hub's own test is not published; git's is a NUL byte, which every PNG,
# JPEG and safetensors header has in its first bytes.
SAMPLE_BYTES = 512


def is_binary(sample: bytes) -> bool:
    """Whether a file whose first bytes are `sample` is binary (a NUL byte among its first 512)."""
    return b"\0" in sample[:SAMPLE_BYTES]


def preupload(hub: HubServer, request: Request) -> Response:
    """Tell the client, per file, whether to send it inline ("regular") or through LFS, and its current oid."""
    create_pr = is_true(request.arg("create_pr"))
    require(request, "write")  # a read token reads only, pull requests included (security-tokens.md)
    repo = hub.repo(request, write=not create_pr)
    _, commit = hub.resolve(repo, request)
    payload = request.json()
    files = commit["files"]
    lfs_patterns = repo.lfs_patterns(files)
    ignore = [line.strip() for line in (payload.get("gitIgnore") or "").splitlines()]
    ignore = [p for p in ignore if p and not p.startswith("#")]
    answer = []
    for item in payload.get("files", []):
        path, size = item["path"], int(item["size"])
        sample = base64.b64decode(item.get("sample") or "")
        lfs = size >= MAX_REGULAR_FILE_SIZE or matches_any(path, lfs_patterns) or is_binary(sample)
        current = files.get(path)
        answer.append(
            {
                "path": path,
                "uploadMode": "lfs" if lfs else "regular",
                "shouldIgnore": matches_any(path, ignore),
                "oid": current["sha"] if current else None,
            }
        )
    return json_response({"files": answer, "commitOid": commit["id"]})


def commit(hub: HubServer, request: Request) -> Response:
    """Apply an ndjson commit (header, file, lfsFile, deletedFile, deletedFolder) atomically."""
    create_pr = is_true(request.arg("create_pr"))
    require(request, "write")  # a read token reads only, pull requests included (security-tokens.md)
    repo = hub.repo(request, write=not create_pr)
    rev = unquote(request.params["rev"])
    target = repo.branch_ref(rev)
    if target is None:
        if repo.resolve(rev) is not None:
            raise HubError(400, f"Invalid rev id: {rev} is not a branch; commits go to branches or PR refs")
        raise revision_not_found(rev)

    try:
        lines = [json.loads(line) for line in request.body().splitlines() if line.strip()]
    except ValueError:
        raise HubError(400, "The commit body must be ndjson") from None
    if not lines or lines[0].get("key") != "header":
        raise HubError(400, "The first line of a commit must be its header")
    header = lines[0]["value"]
    if not (header.get("summary") or "").strip():
        raise HubError(400, "A commit needs a non-empty summary")

    with hub.write_lock:
        head = repo.ref(target)  # read again under the lock: another commit may have moved it
        assert head is not None, "refs are never deleted, and branch_ref() found this one"
        parent = header.get("parentCommit")
        if parent and not create_pr and not head.startswith(parent):
            raise HubError(412, "The branch was updated since you opened this page. Please refresh and try again.")
        base = repo.resolve(parent) if (create_pr and parent) else head
        if base is None:
            raise revision_not_found(parent)
        files = dict(repo.commit(base)["files"])
        for op in lines[1:]:
            apply_operation(repo, files, op.get("key"), op.get("value") or {})
        new = repo.write_commit(base, header["summary"], header.get("description") or "", files, author=USER)
        if create_pr:
            number = max((int(n) for n in repo.refs("pr")), default=0) + 1
            target = f"refs/pr/{number}"
        repo.set_ref(target, new["id"])  # the atomic publish step

    commit_url = f"{hub.repo_url(repo)}/commit/{new['id']}"
    body = {"success": True, "commitOid": new["id"], "commitUrl": commit_url}
    if create_pr:
        body["pullRequestUrl"] = f"{hub.repo_url(repo)}/discussions/{target.rsplit('/', 1)[1]}"
    return json_response(body)


def apply_operation(repo: Repo, files: dict, key: str | None, value: dict) -> None:
    """Apply one commit line to the file map (blobs are written before the commit is published)."""
    path = (value.get("path") or "").strip("/")
    if key in ("file", "lfsFile", "deletedFile") and (not path or ".." in path.split("/")):
        raise HubError(400, f"Invalid path in commit: {value.get('path')!r}")
    if key == "file":
        data = base64.b64decode(value.get("content") or "")
        if len(data) > MAX_REGULAR_FILE_SIZE:
            raise HubError(400, f"{path} is larger than 10 MiB: it must be uploaded with Git LFS")
        if is_binary(data):
            raise HubError(400, f"Your push was rejected because it contains binary files: {path}. "
                                "Upload binary files through LFS/Xet (the preupload step says so)")
        files[path] = repo.store_regular(data)
    elif key == "lfsFile":
        oid = value.get("oid") or ""
        size = value.get("size")
        if not SHA256_RE.match(oid) or not repo.has_blob(oid, size):
            raise HubError(422, f"LFS object {oid} for {path} was not uploaded (or has another size)")
        files[path] = {"sha": oid, "size": repo.blob_path(oid).stat().st_size, "lfs": True}
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
    elif key == "deletedFolder":
        inside = [p for p in files if p.startswith(path + "/")] if path else list(files)
        if not inside:
            raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
        for p in inside:
            del files[p]
    else:
        raise HubError(400, f"Unknown commit operation: {key!r}")


def create_branch(hub: HubServer, request: Request) -> Response:
    """Create a branch at `startingPoint` (default: head of main)."""
    require(request, "write")
    repo, branch = hub.repo(request, write=True), unquote(request.params["rev"])
    if branch.startswith("refs/") or not REF_NAME_RE.match(branch) or ".." in branch:
        raise HubError(400, f"Invalid reference for a branch: {branch}")
    start = request.json().get("startingPoint") or "main"
    with hub.write_lock:
        if repo.ref(f"refs/heads/{branch}") is not None:
            raise HubError(409, "Reference already exists")
        cid = repo.resolve(start)
        if cid is None:
            raise revision_not_found(start)
        repo.set_ref(f"refs/heads/{branch}", cid)
    return json_response({})


def create_tag(hub: HubServer, request: Request) -> Response:
    """Tag the commit a revision resolves to."""
    require(request, "write")
    repo = hub.repo(request, write=True)
    cid, _ = hub.resolve(repo, request)
    tag = request.json().get("tag") or ""
    if tag.startswith("refs/") or not REF_NAME_RE.match(tag) or ".." in tag:
        raise HubError(400, f"Invalid tag name: {tag}")
    with hub.write_lock:
        if repo.ref(f"refs/tags/{tag}") is not None:
            raise HubError(409, "Tag already exists")
        repo.set_ref(f"refs/tags/{tag}", cid)
    return json_response({})


ROUTES = [
    route("POST", REPO_API + r"/preupload/(?P<rev>[^/]+)$", preupload),
    route("POST", REPO_API + r"/commit/(?P<rev>[^/]+)$", commit),
    route("POST", REPO_API + r"/branch/(?P<rev>[^/]+)$", create_branch),
    route("POST", REPO_API + r"/tag/(?P<rev>[^/]+)$", create_tag),
]
