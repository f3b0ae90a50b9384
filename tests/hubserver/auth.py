"""Who is calling: Bearer tokens map to a role ("write" or "read") of one test user; anonymous calls have none.
The user and its organization each have a plan (free / PRO, Team / Enterprise), which decides what Spaces they may
create (spaces.check_plan) and what whoami reports.

As on the Hub, an invalid token is a 401 even where anonymous access would do (the client must not silently fall
back), a read token writing (a pull request included) is a 403, and error messages never echo the token. A token
writes only to its user's and its organizations' namespaces (HubServer.namespaces): elsewhere a write is a 403,
except opening a pull request on a public repo, and another namespace's private repos are not found (404).
"""

from __future__ import annotations

from .errors import HubError
from .http import Request

USER = "testuser"  # every valid token belongs to this single user
ORGS = ("testorg",)
# Each namespace's plan, as the Hub bills it: a user is "free" or "pro", an organization has no plan (None) or
# "team" / "enterprise". The defaults: a free user in a Team organization. HubServer.plans holds the live copy.
PLANS: dict[str, str | None] = {USER: "free", "testorg": "team"}
PAID_PLANS = ("pro", "team", "enterprise")


def authenticate(tokens: dict[str, str], authorization: str | None, signed: bool) -> str | None:
    """Role of the Bearer token in an Authorization header (None if anonymous)."""
    if signed:
        if authorization is not None:  # what S3 answers when a pre-signed URL also carries a header
            raise HubError(400, "InvalidArgument: Only one auth mechanism allowed")
        return None
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    role = tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if role is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    return role


def require(request: Request, role: str) -> None:
    """401 when anonymous, 403 when a read token tries to write."""
    if request.role is None:
        raise HubError(401, "You must be authenticated to perform this action (missing Bearer token)")
    if role == "write" and request.role != "write":
        raise HubError(403, "You don't have the rights to write to this repository: the token is read-only")
