"""Downloads, the way `hf_hub_download` / `snapshot_download` / timm fetch files.

    GET    /{prefix}{repo}/resolve/{rev}/{path}   HEAD too; LFS files answer 302 to the storage origin
    GET    <storage>/cdn-lfs/...                  pre-signed, unauthenticated, HEAD and Range too (like the CDN)

The resolve answer carries what the client caches by: X-Repo-Commit (the commit the revision resolved to, also on a
404 so a missing file is cached as missing for that commit), ETag (git sha1 or LFS sha256) and, for LFS files,
X-Linked-Etag / X-Linked-Size, since the redirect target is on another origin.
"""

from __future__ import annotations

import mimetypes
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from .errors import HubError
from .http import REPO_GIT, Request, Response, file_response, route
from .signing import SIGNED_PATH, signed_repo, signed_url

if TYPE_CHECKING:
    from .server import HubServer


def resolve(hub: HubServer, request: Request) -> Response:
    """File download (GET/HEAD). Regular files are served here; LFS files redirect to the storage origin."""
    repo = hub.repo(request)
    cid, commit = hub.resolve(repo, request)
    path = unquote(request.params["path"])
    entry = commit["files"].get(path)
    if entry is None:
        raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": cid})
    headers = {"X-Repo-Commit": cid, "ETag": f'"{entry["sha"]}"'}
    if not entry["lfs"]:
        headers["Content-Type"] = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return file_response(repo.blob_path(entry["sha"]), request.headers.get("Range"), headers)
    location = signed_url(hub, "cdn-lfs", repo, entry["sha"], filename=path.rsplit("/", 1)[-1])
    headers.update(
        {
            "Location": location,
            "X-Linked-Etag": f'"{entry["sha"]}"',
            "X-Linked-Size": str(entry["size"]),
            "Content-Type": "text/plain; charset=utf-8",
        }
    )
    return Response(302, f"Found. Redirecting to {location}".encode(), headers)


def cdn_download(hub: HubServer, request: Request) -> Response:
    """The CDN side of an LFS download: signed, unauthenticated, range-capable."""
    repo = signed_repo(hub, request)
    oid = request.params["oid"]
    if not repo.has_blob(oid):
        raise HubError(404, "NoSuchKey")
    filename = request.arg("filename") or oid
    headers = {
        "ETag": f'"{oid}"',
        "Content-Type": "application/octet-stream",
        # The client reads the display name from `filename="...";` (note the trailing semicolon).
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}; filename=\"{filename}\";",
    }
    return file_response(repo.blob_path(oid), request.headers.get("Range"), headers)


ROUTES = [
    route("GET", REPO_GIT + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", resolve),
    route("GET", r"^/cdn-lfs" + SIGNED_PATH, cdn_download, signed=True),
]
