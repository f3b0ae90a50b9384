"""Reading a repo's files and refs (`list_repo_files`, `snapshot_download`'s listing, `list_repo_refs`).

    GET    /api/{type}s/{repo}/tree/{rev}[/{path}]   `?recursive=`; paginated with a `Link: rel="next"` header
    GET    /api/{type}s/{repo}/refs                  branches and tags
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote, urlencode

from .errors import HubError
from .http import REPO_API, Request, Response, is_true, json_response, route
from .listing import folder_entry, folders_of, tree_entry

if TYPE_CHECKING:
    from .server import HubServer

TREE_PAGE_SIZE = 1000  # the Hub's page size for /tree listings (50 with `expand`)


def tree(hub: HubServer, request: Request) -> Response:
    """List a folder (or everything below it with `recursive`), paginated with a Link header."""
    repo = hub.repo(request)
    _, commit = hub.resolve(repo, request)
    files = commit["files"]
    folder = unquote(request.params.get("path") or "").strip("/")
    folders = folders_of(files)
    if folder and folder not in folders:
        raise HubError(404, f"Entry not found: {folder} is not a folder", code="EntryNotFound")
    prefix = folder + "/" if folder else ""
    recursive = is_true(request.arg("recursive"))

    def listed(path: str) -> bool:
        return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

    entries = [folder_entry(p, files) for p in sorted(folders) if listed(p)]
    entries += [tree_entry(p, files[p]) for p in sorted(files) if listed(p)]
    start = int(request.arg("cursor") or 0)
    page_size = 50 if is_true(request.arg("expand")) else TREE_PAGE_SIZE
    headers = {}
    if start + page_size < len(entries):
        query = {k: v[0] for k, v in request.query.items()} | {"cursor": str(start + page_size)}
        headers["Link"] = f'<{hub.url}{request.path}?{urlencode(query)}>; rel="next"'
    return json_response(entries[start : start + page_size], headers=headers)


def list_refs(hub: HubServer, request: Request) -> Response:
    """Branches and tags."""
    repo = hub.repo(request)

    def refs(kind: str, prefix: str) -> list[dict]:
        return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": c} for n, c in repo.refs(kind).items()]

    return json_response({"branches": refs("heads", "refs/heads/"), "converts": [], "tags": refs("tags", "refs/tags/")})


ROUTES = [
    route("GET", REPO_API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", tree),
    route("GET", REPO_API + r"/refs$", list_refs),
]
