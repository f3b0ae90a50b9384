"""Space variables and secrets.

    GET    /api/spaces/{repo}/variables   POST / DELETE too ({key, value, description?} / {key})
    POST   /api/spaces/{repo}/secrets     write-only: no endpoint ever returns a secret's value
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .auth import require
from .errors import HubError
from .http import SPACE_API, Request, Response, json_response, route
from .storage import now_iso

if TYPE_CHECKING:
    from .server import HubServer


def get_variables(hub: HubServer, request: Request) -> Response:
    """A Space's variables as {key: {value, description?, updatedAt}} (authenticated)."""
    require(request, "read")
    return json_response(hub.repo(request).meta()["variables"])


def add_variable(hub: HubServer, request: Request) -> Response:
    """Add or update a Space variable; answers all variables."""
    require(request, "write")
    repo, payload = hub.repo(request), request.json()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", payload.get("key") or ""):
        raise HubError(400, "Invalid variable key")
    with hub.write_lock:
        meta = repo.meta()
        variable = {"value": str(payload.get("value", "")), "updatedAt": now_iso()}
        if payload.get("description") is not None:
            variable["description"] = payload["description"]
        meta["variables"][payload["key"]] = variable
        repo.save_meta(meta)
    return json_response(meta["variables"])


def delete_variable(hub: HubServer, request: Request) -> Response:
    """Delete a Space variable (missing keys are ignored, like the Hub); answers the remaining variables."""
    require(request, "write")
    repo, key = hub.repo(request), request.json().get("key")
    with hub.write_lock:
        meta = repo.meta()
        meta["variables"].pop(key, None)
        repo.save_meta(meta)
    return json_response(meta["variables"])


def add_secret(hub: HubServer, request: Request) -> Response:
    """Add a Space secret. Only its key and description are kept: secret values are write-only."""
    require(request, "write")
    repo, payload = hub.repo(request), request.json()
    with hub.write_lock:
        meta = repo.meta()
        meta["secrets"][payload["key"]] = {"description": payload.get("description"), "updatedAt": now_iso()}
        repo.save_meta(meta)
    return json_response({})


ROUTES = [
    route("GET", SPACE_API + r"/variables$", get_variables),
    route("POST", SPACE_API + r"/variables$", add_variable),
    route("DELETE", SPACE_API + r"/variables$", delete_variable),
    route("POST", SPACE_API + r"/secrets$", add_secret),
]
