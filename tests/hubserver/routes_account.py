"""Account endpoints: who the token belongs to, and the README metadata check the client runs before commits.

    GET    /api/whoami-v2
    POST   /api/validate-yaml        400 + `errors` aborts the commit; `warnings` (e.g. no metadata) only warn
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .auth import ORGS, USER, require
from .front_matter import check_front_matter
from .http import Request, Response, json_response, route

if TYPE_CHECKING:
    from .server import HubServer


def whoami(hub: HubServer, request: Request) -> Response:
    """Who the token belongs to and its role; never echoes the token."""
    require(request, "read")
    return json_response(
        {
            "type": "user",
            "id": hashlib.sha1(USER.encode()).hexdigest()[:24],
            "name": USER,
            "fullname": "Test User",
            "isPro": False,
            "orgs": [{"type": "org", "name": org, "roleInOrg": "admin"} for org in ORGS],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": f"{request.role}-token", "role": request.role},
            },
        }
    )


def validate_yaml(hub: HubServer, request: Request) -> Response:
    """README.md metadata check: 400 with `errors` when invalid, `warnings` for e.g. missing metadata."""
    errors, warnings = check_front_matter(request.json().get("content") or "")
    body = {"errors": errors, "warnings": warnings}
    if errors:
        return json_response({"error": "Invalid metadata in README.md", **body}, 400)
    return json_response(body)


ROUTES = [
    route("GET", r"^/api/whoami-v2$", whoami),
    route("POST", r"^/api/validate-yaml$", validate_yaml),
]
