"""Space settings: variables, secrets, hardware and the runtime they give (see spaces.py for the shapes).

    GET    /api/spaces/{repo}/variables   POST too ({key, value, description?})
    POST   /api/spaces/{repo}/secrets     write-only: no endpoint ever returns a secret's value
    GET    /api/spaces/{repo}/runtime
    POST   /api/spaces/{repo}/hardware    {"flavor", "sleepTimeSeconds"?}; answers the new runtime

Changing a variable, a secret or the hardware restarts a real Space; nothing runs here, so they are only stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import spaces
from .auth import require
from .http import SPACE_API, Request, Response, json_response, route

if TYPE_CHECKING:
    from .server import HubServer


def get_variables(hub: HubServer, request: Request) -> Response:
    """A Space's variables as {key: {value, description?, updatedAt}} (authenticated)."""
    require(request, "read")
    return json_response(hub.repo(request).meta()["variables"])


def add_variable(hub: HubServer, request: Request) -> Response:
    """Add or update a Space variable; answers all variables."""
    require(request, "write")
    repo = hub.repo(request, write=True)
    key, variable = spaces.key_value(request.json(), "variable")
    with hub.write_lock:
        meta = repo.meta()
        meta["variables"][key] = variable
        repo.save_meta(meta)
    return json_response(meta["variables"])


def add_secret(hub: HubServer, request: Request) -> Response:
    """Add or update a Space secret. The answer is empty: secret values are write-only."""
    require(request, "write")
    repo = hub.repo(request, write=True)
    key, secret = spaces.key_value(request.json(), "secret")
    with hub.write_lock:
        repo.save_secrets({**repo.secrets(), key: secret})
    return json_response({})


def get_runtime(hub: HubServer, request: Request) -> Response:
    """The Space's stage and hardware (readable by anyone who can see the Space)."""
    return json_response(spaces.runtime(hub.repo(request)))


def request_hardware(hub: HubServer, request: Request) -> Response:
    """Switch the Space to another hardware flavor (and sleep time); answers the new runtime."""
    require(request, "write")
    repo, payload = hub.repo(request, write=True), request.json()
    flavor = spaces.check_hardware(payload.get("flavor"))
    sleep_time = spaces.check_sleep_time(payload.get("sleepTimeSeconds"))
    with hub.write_lock:
        meta = repo.meta()
        meta["hardware"] = flavor
        if sleep_time is not None:
            meta["sleepTime"] = sleep_time
        repo.save_meta(meta)
    return json_response(spaces.runtime(repo))


ROUTES = [
    route("GET", SPACE_API + r"/variables$", get_variables),
    route("POST", SPACE_API + r"/variables$", add_variable),
    route("POST", SPACE_API + r"/secrets$", add_secret),
    route("GET", SPACE_API + r"/runtime$", get_runtime),
    route("POST", SPACE_API + r"/hardware$", request_hardware),
]
