"""Creating a repo and describing it (`model_info` / `dataset_info` / `space_info`).

    POST   /api/repos/create                    409 + {"url"} when it exists (the client's exist_ok relies on it)
    GET    /api/{type}s/{repo}[/revision/{rev}] `sha`, `siblings` (names only), Space `runtime`

A Space is created with its settings in the same call (sdk, hardware, variables, secrets: see spaces.py); a
namespace whose plan may not host it on that hardware gets 402 Payment Required, and a namespace the caller is
not a member of gets 403 (before the 409, so exist_ok falls back to repo_info as on the Hub). Like the Hub, an
existing repo answers 409 and nothing in the request is applied, so `create_repo(..., exist_ok=True)` does not
update an existing Space's variables, secrets or hardware.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from . import spaces
from .auth import USER, require
from .errors import HubError
from .http import REPO_API, Request, Response, json_response, route
from .storage import NAME_RE, TYPE_PREFIX, Repo, now_iso

if TYPE_CHECKING:
    from .server import HubServer

# The .gitattributes a new repo starts with on the Hub (subset): it decides which paths go through LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz"
        " *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar"
        " *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
    ).split()
)


def create_repo(hub: HubServer, request: Request) -> Response:
    """Create a repo with its initial commit (.gitattributes, plus a README with the sdk for Spaces)."""
    require(request, "write")
    payload = request.json()
    repo_type = payload.get("type") or "model"
    ns, name = payload.get("organization") or USER, payload.get("name") or ""
    if repo_type not in TYPE_PREFIX or not NAME_RE.match(ns) or not NAME_RE.match(name) or "--" in name:
        raise HubError(400, f"Invalid repo name or type: {ns}/{name} ({repo_type})")
    if ns not in hub.namespaces:
        raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{ns}"')
    space_meta, secrets = spaces.new_space(payload) if repo_type == "space" else ({}, {})
    if repo_type == "space":
        spaces.check_plan(hub.plans, ns, space_meta["sdk"], space_meta["hardware"])
    repo = Repo(hub.root, repo_type, f"{ns}/{name}")
    with hub.write_lock:
        if repo.exists():
            raise HubError(409, f"You already created this {repo_type} repo", url=hub.repo_url(repo))
        private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
        meta = {"id": repo.id, "type": repo_type, "private": private, "createdAt": now_iso(), **space_meta}
        files = {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
        if repo_type == "space":
            files["README.md"] = f"---\ntitle: {name}\nsdk: {payload['sdk']}\n---\n".encode()
            repo.save_secrets(secrets)
        entries = {path: repo.store_regular(data) for path, data in files.items()}
        commit = repo.write_commit(None, "initial commit", "", entries, author=USER)
        repo.set_ref("refs/heads/main", commit["id"])
        repo.save_meta(meta)  # last: the repo "exists" only once it is complete
    return json_response({"url": hub.repo_url(repo), "name": repo.id, "id": commit["id"][:24]})


def repo_info(hub: HubServer, request: Request) -> Response:
    """model_info / space_info / dataset_info (optionally at a revision)."""
    repo = hub.repo(request)
    cid, commit = hub.resolve(repo, request)
    meta, files = repo.meta(), commit["files"]
    siblings = [{"rfilename": path} for path in sorted(files)]  # no client call here asks for sizes (?blobs=true)
    info = {
        "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
        "id": repo.id,
        "author": repo.id.split("/")[0],
        "sha": cid,
        "lastModified": commit["date"],
        "createdAt": meta["createdAt"],
        "private": meta["private"],
        "gated": False,
        "disabled": False,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(e["size"] for e in files.values()),
    }
    if repo.type == "model":
        info.update(modelId=repo.id, downloads=0)
    if repo.type == "space":
        info.update(sdk=meta["sdk"], runtime=spaces.runtime(repo))
    return json_response(info)


ROUTES = [
    route("POST", r"^/api/repos/create$", create_repo),
    route("GET", REPO_API + r"(?:/revision/(?P<rev>[^/]+))?$", repo_info),
]
