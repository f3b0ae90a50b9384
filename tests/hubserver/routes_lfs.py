"""The git-lfs upload protocol (basic transfer), as `huggingface_hub` runs it for LFS files of a commit.

    POST   /{prefix}{repo}.git/info/lfs/objects/batch    a pre-signed upload URL (+ verify) per missing object
    PUT    <storage>/lfs-upload/...                       pre-signed, unauthenticated (like an S3 pre-signed URL)
    POST   /{prefix}{repo}.git/info/lfs/objects/verify    confirms the object arrived complete

`{prefix}` is "", "datasets/" or "spaces/". Objects are stored under their sha256; the commit that references them
comes after, so an upload interrupted by a crash is simply uploaded again (or skipped when it had arrived).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .auth import require
from .errors import HubError
from .http import REPO_GIT, Request, Response, json_response, route
from .signing import SIGNED_PATH, SIGNED_URL_TTL_S, signed_repo, signed_url
from .storage import SHA256_RE

if TYPE_CHECKING:
    from .server import HubServer

logger = logging.getLogger(__name__)


def lfs_batch(hub: HubServer, request: Request) -> Response:
    """git-lfs batch API: a signed upload URL (+ verify) per missing object, nothing for stored ones."""
    payload = request.json()
    # An upload needs a write token. Without `ref` it is a pull request's upload, which may go to another
    # namespace's repo (the commit that follows decides), but a read token reads only.
    require(request, "write")
    repo = hub.repo(request)
    if payload.get("operation") != "upload":
        raise HubError(422, "Only the 'upload' operation is supported")
    objects = []
    for obj in payload.get("objects", []):
        oid, size = obj.get("oid", ""), obj.get("size")
        if not SHA256_RE.match(oid) or not isinstance(size, int) or size < 0:
            error = {"code": 422, "message": "Invalid object"}
            objects.append({"oid": str(oid), "size": int(size or 0), "error": error})
        elif repo.has_blob(oid, size):
            objects.append({"oid": oid, "size": size})  # no actions: already uploaded
        else:
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": signed_url(hub, "lfs-upload", repo, oid), "expires_in": SIGNED_URL_TTL_S},
                        "verify": {"href": f"{hub.url}/{repo.url_path}.git/info/lfs/objects/verify", "header": {}},
                    },
                }
            )
    body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
    return json_response(body, headers={"Content-Type": "application/vnd.git-lfs+json"})


def lfs_upload(hub: HubServer, request: Request) -> Response:
    """PUT of an LFS object to its pre-signed URL: content must hash to the oid."""
    repo = signed_repo(hub, request)
    oid = request.params["oid"]
    size = repo.put_blob_stream(oid, request.body_chunks())
    logger.debug("hubserver: stored LFS object %s (%d bytes) in %s", oid, size, repo.id)
    return Response(200, headers={"ETag": f'"{oid}"'})


def lfs_verify(hub: HubServer, request: Request) -> Response:
    """Confirm an LFS object arrived complete."""
    require(request, "read")
    repo, payload = hub.repo(request), request.json()
    oid, size = payload.get("oid", ""), payload.get("size")
    if not SHA256_RE.match(oid) or not repo.has_blob(oid):
        raise HubError(404, f"Object {oid} not found")
    if repo.blob_path(oid).stat().st_size != size:
        raise HubError(422, f"Object {oid} has another size than {size}")
    return json_response({"success": True})


ROUTES = [
    route("POST", REPO_GIT + r"\.git/info/lfs/objects/batch$", lfs_batch),
    route("PUT", r"^/lfs-upload" + SIGNED_PATH, lfs_upload, signed=True),
    route("POST", REPO_GIT + r"\.git/info/lfs/objects/verify$", lfs_verify),
]
