"""Account endpoints: who the token belongs to, and the README metadata check the client runs before commits.

    GET    /api/whoami-v2            the user, `isPro`, its organizations and the token's role
    POST   /api/validate-yaml        400 + `errors` aborts the commit; `warnings` (e.g. no metadata) only warn
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .auth import ORGS, PAID_PLANS, USER, require
from .front_matter import check_front_matter
from .http import Request, Response, json_response, route

if TYPE_CHECKING:
    from .server import HubServer


def _entity(kind: str, name: str, fullname: str, paid: bool) -> dict:
    """The fields whoami-v2 gives a user and each of its organizations (huggingface.js `ApiWhoAmIEntityBase`)."""
    return {
        "type": kind,
        "id": hashlib.sha1(name.encode()).hexdigest()[:24],
        "name": name,
        "fullname": fullname,
        "email": f"{name}@example.invalid" if kind == "user" else None,
        "canPay": paid,
        "avatarUrl": f"/avatars/{name}.svg",
        "periodEnd": 1893456000 if paid else None,  # the end of the paid period (Unix seconds), None when free
    }


def whoami(hub: HubServer, request: Request) -> Response:
    """Who the token belongs to and its role; never echoes the token.

    The shape of the Hub's answer (huggingface.js `ApiWhoAmIUser`): the user's plan is the boolean `isPro`; an
    organization's entry carries no reliable plan (its `plan` field is deprecated), so none is sent here.
    """
    require(request, "read")
    return json_response(
        {
            **_entity("user", USER, "Test User", hub.plans.get(USER) in PAID_PLANS),
            "emailVerified": True,
            "isPro": hub.plans.get(USER) == "pro",
            "orgs": [{**_entity("org", org, org.title(), hub.plans.get(org) in PAID_PLANS), "roleInOrg": "admin"}
                     for org in ORGS],
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
