"""HTTP errors answered the way the Hub answers them, so the real client raises its own typed exceptions.

The Hub's convention is a JSON `{"error": message}` body plus `X-Error-Code` / `X-Error-Message` headers;
`huggingface_hub.utils.hf_raise_for_status` reads the code to pick RepositoryNotFoundError, RevisionNotFoundError,
EntryNotFoundError... so tests can assert on the exception types user code sees in production.
"""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """An error response: status, message, optional X-Error-Code, extra headers and extra body fields."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None,
                 **body: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = {"error": message, **body}

    def response_headers(self) -> dict[str, str]:
        """X-Error-Code / X-Error-Message (what `hf_raise_for_status` reads) plus the extra headers."""
        headers = {"X-Error-Message": self.message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return headers


def repo_not_found(anonymous: bool) -> HubError:
    """The Hub answers 401 to anonymous callers (it cannot tell private from missing) and 404 otherwise."""
    return HubError(401 if anonymous else 404, "Repository not found", code="RepoNotFound")


def revision_not_found(rev: str) -> HubError:
    """Unknown branch / tag / commit: the client raises RevisionNotFoundError."""
    return HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
