"""Pre-signed storage URLs: the S3 / CDN side of LFS transfers.

The storage origin is `http://localhost:PORT` while the API is `http://127.0.0.1:PORT`: the same socket, but a
different origin for the client, so it treats LFS transfers exactly like the real CDN / S3 (no Authorization header
is forwarded). Instead of a token, an HMAC signature with an expiry authorises the request, as on S3.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .errors import HubError
from .http import Request
from .storage import Repo

if TYPE_CHECKING:
    from .server import HubServer

SIGNED_URL_TTL_S = 3600
# Path of an object on the storage origin, after its kind ("/lfs-upload" or "/cdn-lfs").
SIGNED_PATH = r"/(?P<type>model|dataset|space)/(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<oid>[0-9a-f]{64})$"


class Signer:
    """Signs storage paths; the key lives as long as the server object, so issued URLs survive a restart."""

    def __init__(self) -> None:
        self._key = os.urandom(32)

    def _mac(self, path: str, fields: dict[str, str]) -> str:
        message = path + "?" + urlencode(sorted(fields.items()))
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, **fields: str) -> str:
        """Query string of a pre-signed URL: the fields, an expiry and an HMAC over all of them and the path."""
        query = {"expires": str(int(time.time()) + SIGNED_URL_TTL_S), **fields}
        return urlencode({**query, "signature": self._mac(path, query)})

    def check(self, path: str, query: dict[str, list[str]]) -> None:
        """403 unless the URL was signed by this server and has not expired (what a CDN / S3 does)."""
        fields = {k: v[0] for k, v in query.items()}
        signature = fields.pop("signature", "")
        if not hmac.compare_digest(signature, self._mac(path, fields)):
            raise HubError(403, "SignatureDoesNotMatch")
        if int(fields.get("expires", "0")) < time.time():
            raise HubError(403, "Request has expired")


def signed_url(hub: HubServer, kind: str, repo: Repo, oid: str, **fields: str) -> str:
    """Pre-signed URL of an LFS object on the storage origin; `kind` is "lfs-upload" or "cdn-lfs"."""
    path = f"/{kind}/{repo.type}/{repo.id}/{oid}"
    return f"{hub.storage_url}{path}?{hub.signer.sign(path, **fields)}"


def signed_repo(hub: HubServer, request: Request) -> Repo:
    """Repo of a pre-signed storage request; the signature already proves the Hub authorised it."""
    hub.signer.check(request.path, request.query)
    repo = Repo(hub.root, request.params["type"], f"{request.params['ns']}/{request.params['name']}")
    if not repo.exists():
        raise HubError(404, "NoSuchKey")
    return repo
