"""A Hugging Face Hub-compatible HTTP server for tests (stdlib only).

Why it exists: the real Hub is not reachable from CI, but we want the *real* `huggingface_hub` client (2.4.0) and
timm to speak the same protocol they speak in production. Mocking the client would only test our mocks, so instead
this module implements the server side of the endpoints the client actually calls, with the same JSON shapes,
headers and error conventions (JSON `{"error": ...}` body + `X-Error-Code` / `X-Error-Message` headers, which the
client maps to its typed exceptions).

One concept: a repository is content-addressed blobs + immutable commit files + mutable ref files, on disk under
`root` so that a restarted server (same port, same root) sees the same repos. A commit is applied atomically: blobs
first, then the commit file, then the ref file is swapped with `os.replace`, so a reader (or a server killed in
between) always sees the old commit or the new one, never a mix.

Endpoints (paths as the client builds them; `{repo}` is `namespace/name`, `{prefix}` is "", "datasets/" or "spaces/"):

    GET    /api/whoami-v2
    POST   /api/validate-yaml                            README.md front-matter check (called before commits)
    POST   /api/repos/create                             409 + {"url"} when it exists (client's exist_ok relies on it)
    DELETE /api/repos/delete
    PUT    /api/{type}s/{repo}/settings                  private / gated
    GET    /api/{type}s/{repo}[/revision/{rev}]          repo info (`sha`, `siblings`; `?blobs=true` adds sizes/LFS)
    GET    /api/{type}s/{repo}/tree/{rev}[/{path}]       `?recursive=`; paginated with a `Link: rel="next"` header
    POST   /api/{type}s/{repo}/paths-info/{rev}          form-encoded `paths=`
    GET    /api/{type}s/{repo}/refs                      `?include_prs=1`
    GET    /api/{type}s/{repo}/commits/{rev}
    POST   /api/{type}s/{repo}/preupload/{rev}           says "lfs" or "regular" per file
    POST   /api/{type}s/{repo}/commit/{rev}              ndjson body; `?create_pr=1` opens refs/pr/N
    POST   /api/{type}s/{repo}/branch/{branch}           DELETE too
    POST   /api/{type}s/{repo}/tag/{rev}                 DELETE /tag/{tag} too
    GET    /api/spaces/{repo}/variables                  POST / DELETE too; POST / DELETE .../secrets (write-only)
    POST   /{prefix}{repo}.git/info/lfs/objects/batch    git-lfs batch API (basic transfer)
    POST   /{prefix}{repo}.git/info/lfs/objects/verify
    GET    /{prefix}{repo}/resolve/{rev}/{path}          HEAD too; LFS files answer 302 to the storage origin
    PUT    <storage>/lfs-upload/...                      signed, unauthenticated (like an S3 pre-signed URL)
    GET    <storage>/cdn-lfs/...                         signed, unauthenticated, HEAD too (like the CDN)

The "storage origin" is `http://localhost:PORT` while the API is `http://127.0.0.1:PORT`: the same socket, but a
different origin for the client, so it treats LFS transfers exactly like the real CDN / S3 (no Authorization header
is forwarded; the storage routes reject requests that carry one, as S3 does).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

logger = logging.getLogger(__name__)

USER = "testuser"  # every valid token belongs to this single user
ORGS = ("testorg",)
MAX_REGULAR_FILE_SIZE = 10 * 1024 * 1024  # the Hub refuses regular (non-LFS) files above 10 MiB
TREE_PAGE_SIZE = 1000  # the Hub's page size for /tree listings
SIGNED_URL_TTL_S = 3600
CHUNK = 1024 * 1024
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REF_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

# The .gitattributes a new repo starts with on the Hub (subset): it decides which paths go through LFS.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz"
        " *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar"
        " *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
    ).split()
)


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: what the Hub reports as `oid` / ETag for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer file that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def now_iso() -> str:
    """Timestamp in the Hub's format ('2024-01-31T12:00:00.000Z'), parsed by the client's `parse_datetime`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old or the new content, never a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def is_true(value: str | None) -> bool:
    """Query-string booleans: httpx sends `true`, some callers send `1`."""
    return (value or "").lower() in ("1", "true", "yes")


class HubError(Exception):
    """An HTTP error answered the way the Hub does: JSON `{"error": msg}` + X-Error-Code / X-Error-Message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **body):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = headers or {}
        self.body = {"error": message, **body}


def repo_not_found(anonymous: bool) -> HubError:
    """The Hub answers 401 to anonymous callers (it cannot tell private from missing) and 404 otherwise."""
    return HubError(401 if anonymous else 404, "Repository not found", code="RepoNotFound")


def revision_not_found(rev: str) -> HubError:
    """Unknown branch / tag / commit: the client raises RevisionNotFoundError."""
    return HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")


# --------------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------------


class Repo:
    """One repository on disk.

    Layout under `root/repos/{type}s/{namespace}/{name}/`:
        repo.json                metadata (private, sdk, space variables, ...)
        blobs/ab/<sha>           content, keyed by git sha1 (regular files) or sha256 (LFS files)
        commits/<id>.json        immutable: {id, parent, message, description, author, date, files}
        refs/heads/<branch>, refs/tags/<tag>, refs/pr/<n>   one commit id each, replaced atomically
    """

    def __init__(self, root: Path, repo_type: str, repo_id: str):
        self.type, self.id = repo_type, repo_id
        self.dir = root / "repos" / f"{repo_type}s" / repo_id

    @property
    def url_path(self) -> str:
        """Path of the repo on the website / git side, e.g. `spaces/org/name`."""
        return TYPE_PREFIX[self.type] + self.id

    def exists(self) -> bool:
        """Whether the repo was created (and not deleted)."""
        return (self.dir / "repo.json").is_file()

    def meta(self) -> dict:
        """Repo metadata."""
        return json.loads((self.dir / "repo.json").read_text())

    def save_meta(self, meta: dict) -> None:
        """Replace repo metadata atomically."""
        atomic_write(self.dir / "repo.json", json.dumps(meta, indent=1).encode())

    # ---- blobs -----------------------------------------------------------------------------------------------------

    def blob_path(self, sha: str) -> Path:
        """Where the content with this sha lives."""
        return self.dir / "blobs" / sha[:2] / sha

    def has_blob(self, sha: str, size: int | None = None) -> bool:
        """Whether the content is stored (with the expected size, if given)."""
        path = self.blob_path(sha)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_blob(self, sha: str, data: bytes) -> None:
        """Store a regular file's content (idempotent: same sha, same bytes)."""
        if not self.has_blob(sha):
            atomic_write(self.blob_path(sha), data)

    def put_blob_stream(self, oid: str, chunks: Iterable[bytes]) -> int:
        """Store an LFS upload, checking that its sha256 is `oid`. Returns the size; nothing is kept on mismatch."""
        path = self.blob_path(oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".upload-", delete=False) as tmp:
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    tmp.write(chunk)
                    size += len(chunk)
            except BaseException:
                os.unlink(tmp.name)
                raise
        if digest.hexdigest() != oid:
            os.unlink(tmp.name)
            raise HubError(400, "BadDigest: the sha256 of the uploaded content does not match the object id")
        os.replace(tmp.name, path)
        return size

    # ---- commits ---------------------------------------------------------------------------------------------------

    def commit(self, cid: str) -> dict:
        """Read a commit."""
        return json.loads((self.dir / "commits" / f"{cid}.json").read_text())

    def write_commit(self, parent: str | None, message: str, description: str, files: dict) -> dict:
        """Write a new immutable commit (not yet referenced by any ref) and return it."""
        commit = {
            "parent": parent,
            "message": message,
            "description": description,
            "author": USER,
            "date": now_iso(),
            "files": files,
        }
        # Like git, the id hashes the content (+ a nonce so two identical commits in one millisecond differ).
        payload = json.dumps({**commit, "nonce": uuid.uuid4().hex}, sort_keys=True).encode()
        commit = {"id": hashlib.sha1(payload).hexdigest(), **commit}
        atomic_write(self.dir / "commits" / f"{commit['id']}.json", json.dumps(commit, indent=1).encode())
        return commit

    def history(self, cid: str) -> Iterator[dict]:
        """Commits reachable from `cid`, newest first."""
        while cid:
            commit = self.commit(cid)
            yield commit
            cid = commit["parent"]

    # ---- refs ------------------------------------------------------------------------------------------------------

    def ref(self, name: str) -> str | None:
        """Commit id a full ref name ('refs/heads/main') points to, or None."""
        if ".." in name or not REF_NAME_RE.match(name):
            return None
        path = self.dir / name
        return path.read_text().strip() if path.is_file() else None

    def set_ref(self, name: str, cid: str) -> None:
        """Point a ref at a commit: the single atomic step that publishes a commit."""
        atomic_write(self.dir / name, cid.encode())

    def delete_ref(self, name: str) -> None:
        """Remove a ref (the commits stay, like unreachable git objects)."""
        (self.dir / name).unlink()

    def refs(self, kind: str) -> dict[str, str]:
        """{short name: commit id} for kind 'heads', 'tags' or 'pr'."""
        base = self.dir / "refs" / kind
        if not base.is_dir():
            return {}
        return {
            str(path.relative_to(base).as_posix()): path.read_text().strip()
            for path in sorted(base.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }

    def resolve(self, rev: str) -> str | None:
        """Commit id for a branch, tag, full ref ('refs/pr/1') or (possibly abbreviated) commit id."""
        for name in ([rev] if rev.startswith("refs/") else []) + [f"refs/heads/{rev}", f"refs/tags/{rev}"]:
            if (cid := self.ref(name)) is not None:
                return cid
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            matches = [p.stem for p in (self.dir / "commits").glob(f"{rev}*.json")]
            if len(matches) == 1:
                return matches[0]
        return None

    def branch_ref(self, rev: str) -> str | None:
        """Full ref name if `rev` names something that can receive commits (a branch or a PR ref)."""
        for name in ([rev] if rev.startswith(("refs/heads/", "refs/pr/")) else []) + [f"refs/heads/{rev}"]:
            if self.ref(name) is not None:
                return name
        return None

    def lfs_patterns(self, files: dict) -> list[str]:
        """Patterns marked `filter=lfs` in the .gitattributes of a commit's file set."""
        entry = files.get(".gitattributes")
        if entry is None or entry["lfs"]:
            return []
        lines = self.blob_path(entry["sha"]).read_text().splitlines()
        return [line.split()[0] for line in lines if "filter=lfs" in line.split()[1:]]


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """gitattributes / gitignore matching: slash-less patterns match the basename at any depth."""
    basename = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in p else basename, p.lstrip("/")) for p in patterns)


def tree_entry(path: str, entry: dict) -> dict:
    """A file as the /tree and /paths-info endpoints describe it."""
    if not entry["lfs"]:
        return {"type": "file", "oid": entry["sha"], "size": entry["size"], "path": path}
    pointer = lfs_pointer(entry["sha"], entry["size"])
    return {
        "type": "file",
        "oid": git_blob_sha1(pointer),  # git sees the pointer file
        "size": entry["size"],
        "path": path,
        "lfs": {"oid": entry["sha"], "size": entry["size"], "pointerSize": len(pointer)},
    }


def folder_entry(path: str, files: dict) -> dict:
    """A folder as /tree describes it; its oid hashes what is inside, like a git tree id."""
    inside = sorted((p, e["sha"]) for p, e in files.items() if p.startswith(path + "/"))
    return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0, "path": path}


def folders_of(files: dict) -> set[str]:
    """Every folder implied by the file paths."""
    return {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}


def check_front_matter(content: str) -> tuple[list[dict], list[dict]]:
    """Validate README.md YAML front matter the way /api/validate-yaml reports it: (errors, warnings).

    Stdlib only, so this is a structural check of the subset model cards use (a top-level mapping of
    `key: value` / `key:` + indented lists or mappings), not a full YAML parser.
    """
    lines = content.splitlines()
    if not lines or lines[0].strip() != "---":
        return [], [{"message": "Empty or missing yaml metadata in repo card"}]
    try:
        end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
    except StopIteration:
        return [{"message": "YAML metadata is not closed by a '---' line"}], []
    errors, keys, in_block = [], set(), False  # in_block: the last key had no inline value ("tags:")
    for number, line in enumerate(lines[1:end], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if "\t" in indent:
            errors.append({"message": f"line {number}: tabs are not allowed for indentation"})
        elif indent:
            continue  # nested content of the previous key (list items, mappings, block scalars)
        elif stripped.startswith("- "):
            if not in_block:  # "tags:\n- a" is a list under a key; a list on its own is not a mapping
                errors.append({"message": f"line {number}: metadata must be a mapping, not a list"})
        elif not (match := re.match(r"^([^\s:#\-][^:]*):(?:\s+(.*))?$", line)):
            errors.append({"message": f"line {number}: expected 'key: value' (metadata must be a mapping)"})
        elif match.group(1) in keys:
            errors.append({"message": f"line {number}: duplicated key '{match.group(1)}'"})
        else:
            keys.add(match.group(1))
            value = (match.group(2) or "").strip()
            in_block = not value
            if (value[:1] == "[" and not value.endswith("]")) or (value[:1] == "{" and not value.endswith("}")):
                errors.append({"message": f"line {number}: unclosed flow collection"})
    return errors, []


# --------------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    """What an endpoint needs from an HTTP request."""

    method: str
    path: str  # raw (percent-encoded) path, without the query string
    query: dict[str, list[str]]
    headers: Any  # email.message.Message: case-insensitive `.get`
    params: dict[str, str]  # named groups of the route regex
    role: str | None  # "write" / "read" for a valid token, None when anonymous
    body_chunks: Callable[[], Iterator[bytes]]

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        return self.query.get(name, [default])[0]

    def body(self) -> bytes:
        """The whole request body."""
        return b"".join(self.body_chunks())

    def json(self) -> Any:
        """The request body parsed as JSON."""
        try:
            return json.loads(self.body() or b"{}")
        except ValueError:
            raise HubError(400, "Invalid JSON body") from None


@dataclass
class Response:
    """An answer: JSON/bytes body, or a slice of a file streamed from disk."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    file: tuple[Path, int, int] | None = None  # (path, start, length)


def json_response(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def file_response(path: Path, range_header: str | None, headers: dict) -> Response:
    """Serve a file, honouring a single `Range: bytes=a-b` (the client uses it to resume downloads)."""
    size = path.stat().st_size
    headers = {"Accept-Ranges": "bytes", **headers}
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header or "")
    if not match or match.groups() == ("", ""):
        return Response(200, headers=headers, file=(path, 0, size))
    first, last = match.groups()
    start = int(first) if first else max(size - int(last), 0)
    end = min(int(last), size - 1) if first and last else size - 1
    if start >= size or start > end:
        return Response(416, headers={"Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(206, headers=headers, file=(path, start, end - start + 1))


@dataclass
class RecordedRequest:
    """One request as seen by the server, for test assertions (never the token itself)."""

    method: str
    path: str
    host: str
    authorized: bool  # whether an Authorization header was sent
    status: int | None = None  # None: the server died without answering


class _Handler(BaseHTTPRequestHandler):
    """Turns raw HTTP into `Request` objects for HubServer and writes its `Response`s back."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response carries a Content-Length
    server_version = "HubServer/1.0"

    def setup(self) -> None:
        """Track the connection so a stop can cut it (a dead server does not keep serving pooled connections)."""
        super().setup()
        self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Logged by HubServer instead (without query strings, which carry URL signatures)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Route http.server's own messages to logging instead of stderr."""
        logger.debug("http.server: " + format, *args)

    def do_GET(self) -> None:
        self.server.hub._serve(self)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def iter_body(self) -> Iterator[bytes]:
        """Yield the request body, whether sent with Content-Length or chunked transfer encoding."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                yield self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                raise ConnectionError("client closed the connection mid-body")
            remaining -= len(chunk)
            yield chunk

    def send(self, response: Response, head_only: bool) -> None:
        """Write a response; the body is omitted for HEAD but Content-Length still describes it."""
        length = response.file[2] if response.file else len(response.body)
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if head_only:
            return
        if response.file is None:
            self.wfile.write(response.body)
            return
        path, start, remaining = response.file
        with path.open("rb") as f:
            f.seek(start)
            while remaining > 0 and (chunk := f.read(min(CHUNK, remaining))):
                self.wfile.write(chunk)
                remaining -= len(chunk)


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------

_REPO_API = r"^/api/(?P<type>model|dataset|space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_REPO_GIT = r"^/(?:(?P<type>dataset|space)s/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)"
_SIGNED = r"/(?P<type>model|dataset|space)/(?P<ns>[^/]+)/(?P<name>[^/]+)/(?P<oid>[0-9a-f]{64})$"
# (methods, path regex, endpoint method name). HEAD is served by the GET routes.
ROUTES = [
    ("GET", r"^/api/whoami-v2$", "whoami"),
    ("POST", r"^/api/validate-yaml$", "validate_yaml"),
    ("POST", r"^/api/repos/create$", "create_repo"),
    ("DELETE", r"^/api/repos/delete$", "delete_repo"),
    ("PUT", _REPO_API + r"/settings$", "update_settings"),
    ("GET", _REPO_API + r"(?:/revision/(?P<rev>[^/]+))?$", "repo_info"),
    ("GET", _REPO_API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", "tree"),
    ("POST", _REPO_API + r"/paths-info/(?P<rev>[^/]+)$", "paths_info"),
    ("GET", _REPO_API + r"/refs$", "list_refs"),
    ("GET", _REPO_API + r"/commits/(?P<rev>[^/]+)$", "list_commits"),
    ("POST", _REPO_API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
    ("POST", _REPO_API + r"/commit/(?P<rev>[^/]+)$", "commit"),
    ("POST", _REPO_API + r"/branch/(?P<rev>[^/]+)$", "create_branch"),
    ("DELETE", _REPO_API + r"/branch/(?P<rev>[^/]+)$", "delete_branch"),
    ("POST", _REPO_API + r"/tag/(?P<rev>[^/]+)$", "create_tag"),
    ("DELETE", _REPO_API + r"/tag/(?P<rev>[^/]+)$", "delete_tag"),
    ("GET", r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)/variables$", "get_variables"),
    ("POST", r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)/variables$", "add_variable"),
    ("DELETE", r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)/variables$", "delete_variable"),
    ("POST", r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)/secrets$", "add_secret"),
    ("DELETE", r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)/secrets$", "delete_secret"),
    ("POST", _REPO_GIT + r"\.git/info/lfs/objects/batch$", "lfs_batch"),
    ("POST", _REPO_GIT + r"\.git/info/lfs/objects/verify$", "lfs_verify"),
    ("GET", _REPO_GIT + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    ("PUT", r"^/lfs-upload" + _SIGNED, "lfs_upload"),
    ("GET", r"^/cdn-lfs" + _SIGNED, "cdn_download"),
]
STORAGE_ENDPOINTS = {"lfs_upload", "cdn_download"}  # pre-signed: no Authorization header allowed
_COMPILED_ROUTES = [(method, re.compile(pattern), name) for method, pattern, name in ROUTES]


class HubServer:
    """A Hub-compatible server on 127.0.0.1, persistent under `root`, restartable on the same port.

    `tokens` maps token -> "write" | "read". Use as a context manager or `start()` / `stop()`.
    """

    def __init__(self, root: Path, port: int = 0, tokens: dict[str, str] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.tokens = dict(tokens or {})
        self.requests: list[RecordedRequest] = []  # every request, in arrival order
        self._secret = os.urandom(32)  # signs storage URLs; kept across restarts so issued URLs stay valid
        self._write_lock = threading.Lock()  # serialises "read ref -> write commit -> replace ref"
        self._faults_lock = threading.Lock()
        self._fail_rules: list[list] = []  # [method, regex, status, remaining]
        self._kill_rules: list[tuple[str, re.Pattern, threading.Event]] = []
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    # ---- lifecycle -------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API origin, what HF_ENDPOINT should be."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        """Origin of LFS uploads/downloads: same socket, different origin (like S3 / the CDN)."""
        return f"http://localhost:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server currently accepts connections."""
        return self._httpd is not None

    def start(self) -> HubServer:
        """Start serving (again) on `port`; port 0 picks a free one, which later restarts then reuse."""
        with self._lifecycle:
            if self._httpd is None:
                httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)  # sets SO_REUSEADDR
                httpd.hub = self  # type: ignore[attr-defined]
                self.port = httpd.server_address[1]
                self._thread = threading.Thread(
                    target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hubserver", daemon=True
                )
                self._httpd = httpd
                self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections; storage stays. Idempotent."""
        with self._lifecycle:
            httpd, self._httpd = self._httpd, None
            if httpd is None:
                return
            httpd.shutdown()
            httpd.server_close()
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- fault injection -------------------------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, status: int = 500, count: int = 1) -> None:
        """Answer `status` to the next `count` requests whose method matches and raw path (no query) `re.search`es."""
        with self._faults_lock:
            self._fail_rules.append([method.upper(), re.compile(path_regex), status, count])

    def kill_on(self, method: str, path_regex: str) -> threading.Event:
        """When a matching request arrives, stop the server without answering it. The Event is set once stopped."""
        stopped = threading.Event()
        with self._faults_lock:
            self._kill_rules.append((method.upper(), re.compile(path_regex), stopped))
        return stopped

    def clear_faults(self) -> None:
        """Drop pending fail_next / kill_on rules (test cleanup)."""
        with self._faults_lock:
            self._fail_rules.clear()
            self._kill_rules.clear()

    def _take_fault(self, method: str, path: str) -> tuple[str, Any] | None:
        """('kill', event) or ('fail', status) for the first rule matching this request, consuming it."""
        with self._faults_lock:
            for i, (rule_method, regex, event) in enumerate(self._kill_rules):
                if rule_method == method and regex.search(path):
                    del self._kill_rules[i]
                    return "kill", event
            for rule in self._fail_rules:
                if rule[0] == method and rule[1].search(path):
                    rule[3] -= 1
                    if rule[3] <= 0:
                        self._fail_rules.remove(rule)
                    return "fail", rule[2]
        return None

    def _die(self, handler: _Handler, stopped: threading.Event) -> None:
        """Simulate a crash mid-request: drop the connection unanswered and stop (from another thread)."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

        def stop_then_signal() -> None:
            self.stop()
            stopped.set()

        threading.Thread(target=stop_then_signal, name="hubserver-kill", daemon=True).start()

    # ---- test helpers ----------------------------------------------------------------------------------------------

    def commits(self, repo_id: str, repo_type: str = "model", ref: str = "main") -> list[dict]:
        """History of `ref`, newest first, as {"id", "message", "files": {path: sha}}. Reads storage directly."""
        repo = Repo(self.root, repo_type, repo_id)
        cid = repo.resolve(ref) if repo.exists() else None
        if cid is None:
            return []
        return [
            {"id": c["id"], "message": c["message"], "files": {p: e["sha"] for p, e in c["files"].items()}}
            for c in repo.history(cid)
        ]

    # ---- dispatch --------------------------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        """Handle one HTTP request: faults, routing, auth, endpoint, error mapping, logging."""
        method = handler.command
        split = urlsplit(handler.path)
        path, host = split.path, (handler.headers.get("Host") or "")
        record = RecordedRequest(method, path, host, handler.headers.get("Authorization") is not None)
        self.requests.append(record)

        fault = self._take_fault(method, path)
        if fault and fault[0] == "kill":
            logger.info("hubserver: killed on %s %s", method, path)
            self._die(handler, fault[1])
            return

        consumed = False

        def body_chunks() -> Iterator[bytes]:
            nonlocal consumed
            consumed = True
            yield from handler.iter_body()

        try:
            if fault:
                raise HubError(fault[1], f"Injected failure ({fault[1]})")
            name, params = self._route(method, path)
            request = Request(
                method=method,
                path=path,
                query=parse_qs(split.query),
                headers=handler.headers,
                params=params,
                role=self._authenticate(handler.headers, storage=name in STORAGE_ENDPOINTS),
                body_chunks=body_chunks,
            )
            response = getattr(self, f"_api_{name}")(request)
        except HubError as error:
            response = json_response(error.body, error.status, self._error_headers(error))
        except ConnectionError as error:  # the client went away mid-body: nobody to answer
            logger.debug("hubserver: connection error on %s %s: %s", method, path, error)
            handler.close_connection = True
            return
        except Exception:  # a server bug: answer 500 like the Hub would, keep the traceback in the logs
            logger.exception("hubserver: error on %s %s", method, path)
            response = json_response({"error": "Internal Error"}, 500)

        # An unread request body would be parsed as the next request on this keep-alive connection.
        has_body = handler.headers.get("Content-Length") not in (None, "0") or handler.headers.get("Transfer-Encoding")
        if has_body and not consumed:
            handler.close_connection = True
        if trace := handler.headers.get("X-Amzn-Trace-Id"):
            response.headers.setdefault("X-Request-Id", trace)
        record.status = response.status
        logger.debug("hubserver: %s %s -> %d", method, path, response.status)
        try:
            handler.send(response, head_only=method == "HEAD")
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, dict[str, str]]:
        """Endpoint name and URL parameters for a request, or a 404/405 HubError."""
        route_method = "GET" if method == "HEAD" else method
        path_matched = False
        for allowed, regex, name in _COMPILED_ROUTES:
            if match := regex.match(path):
                path_matched = True
                if allowed == route_method:
                    return name, {k: v for k, v in match.groupdict().items() if v is not None}
        if path_matched:
            raise HubError(405, f"Method {method} not allowed on {path}")
        raise HubError(404, "Sorry, we can't find the page you are looking for.")

    def _authenticate(self, headers: Any, storage: bool) -> str | None:
        """Role of the Bearer token (None if anonymous). Invalid tokens are a 401, as on the Hub."""
        authorization = headers.get("Authorization")
        if storage:
            if authorization is not None:  # what S3 answers when a signed URL also carries a header
                raise HubError(400, "InvalidArgument: Only one auth mechanism allowed")
            return None
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        role = self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return role

    @staticmethod
    def _error_headers(error: HubError) -> dict[str, str]:
        """X-Error-Code / X-Error-Message: what `hf_raise_for_status` reads to pick the exception type."""
        headers = {"X-Error-Message": error.message, **error.headers}
        if error.code:
            headers["X-Error-Code"] = error.code
        return headers

    # ---- shared endpoint logic -------------------------------------------------------------------------------------

    @staticmethod
    def _require(request: Request, role: str) -> None:
        """401 when anonymous, 403 when a read token tries to write."""
        if request.role is None:
            raise HubError(401, "You must be authenticated to perform this action (missing Bearer token)")
        if role == "write" and request.role != "write":
            raise HubError(403, "You don't have the rights to write to this repository: the token is read-only")

    def _repo(self, request: Request) -> Repo:
        """The repo named in the URL; private repos are invisible to anonymous callers."""
        params = request.params
        ns, name = unquote(params["ns"]), unquote(params["name"])
        if not (NAME_RE.match(ns) and NAME_RE.match(name)):
            raise repo_not_found(request.role is None)
        repo = Repo(self.root, params.get("type") or "model", f"{ns}/{name}")
        if not repo.exists() or (repo.meta()["private"] and request.role is None):
            raise repo_not_found(request.role is None)
        return repo

    @staticmethod
    def _resolve(repo: Repo, request: Request) -> tuple[str, dict]:
        """(commit id, commit) for the `rev` URL parameter (default branch when absent)."""
        rev = unquote(request.params.get("rev") or "main")
        cid = repo.resolve(rev)
        if cid is None:
            raise revision_not_found(rev)
        return cid, repo.commit(cid)

    def _repo_url(self, repo: Repo) -> str:
        """Web URL of a repo, as returned in `url` / `commitUrl` fields."""
        return f"{self.url}/{repo.url_path}"

    def _sign(self, path: str, **fields: str) -> str:
        """Query string of a pre-signed storage URL (expiry + HMAC over path and fields)."""
        query = {"expires": str(int(time.time()) + SIGNED_URL_TTL_S), **fields}
        message = path + "?" + urlencode(sorted(query.items()))
        query["signature"] = hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()
        return urlencode(query)

    def _check_signature(self, request: Request) -> None:
        """403 unless the URL was signed by this server and has not expired (what a CDN / S3 does)."""
        query = {k: v[0] for k, v in request.query.items()}
        signature = query.pop("signature", "")
        message = request.path + "?" + urlencode(sorted(query.items()))
        expected = hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, expected):
            raise HubError(403, "SignatureDoesNotMatch")
        if int(query.get("expires", "0")) < time.time():
            raise HubError(403, "Request has expired")

    def _storage_path(self, kind: str, repo: Repo, oid: str) -> str:
        """Path of an LFS object on the storage origin."""
        return f"/{kind}/{repo.type}/{repo.id}/{oid}"

    def _storage_repo(self, request: Request) -> Repo:
        """Repo of a (signed) storage URL; the signature already proves the Hub authorised it."""
        self._check_signature(request)
        repo = Repo(self.root, request.params["type"], f"{request.params['ns']}/{request.params['name']}")
        if not repo.exists():
            raise HubError(404, "NoSuchKey")
        return repo

    # ---- endpoints: account & repos --------------------------------------------------------------------------------

    def _api_whoami(self, request: Request) -> Response:
        """Who the token belongs to; never echoes the token."""
        self._require(request, "read")
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

    def _api_validate_yaml(self, request: Request) -> Response:
        """README.md metadata check: 400 with `errors` when invalid, `warnings` for e.g. missing metadata."""
        payload = request.json()
        errors, warnings = check_front_matter(payload.get("content") or "")
        body = {"errors": errors, "warnings": warnings}
        if errors:
            return json_response({"error": "Invalid metadata in README.md", **body}, 400)
        return json_response(body)

    def _api_create_repo(self, request: Request) -> Response:
        """Create a repo with its initial commit (.gitattributes, plus a README with the sdk for Spaces)."""
        self._require(request, "write")
        payload = request.json()
        repo_type = payload.get("type") or "model"
        ns, name = payload.get("organization") or USER, payload.get("name") or ""
        if repo_type not in TYPE_PREFIX or not NAME_RE.match(ns) or not NAME_RE.match(name) or "--" in name:
            raise HubError(400, f"Invalid repo name or type: {ns}/{name} ({repo_type})")
        if repo_type == "space" and payload.get("sdk") not in ("gradio", "streamlit", "docker", "static"):
            raise HubError(400, "A Space needs an sdk: one of gradio, streamlit, docker, static")
        repo = Repo(self.root, repo_type, f"{ns}/{name}")
        with self._write_lock:
            if repo.exists():
                raise HubError(409, f"You already created this {repo_type} repo", url=self._repo_url(repo))
            private = payload.get("visibility", "private" if payload.get("private") else "public") != "public"
            meta = {"id": repo.id, "type": repo_type, "private": private, "createdAt": now_iso()}
            files = {".gitattributes": DEFAULT_GITATTRIBUTES.encode()}
            if repo_type == "space":
                meta.update(sdk=payload["sdk"], variables={}, secrets={})
                for variable in payload.get("variables") or []:
                    meta["variables"][variable["key"]] = {"value": variable["value"], "updatedAt": now_iso()}
                files["README.md"] = f"---\ntitle: {name}\nsdk: {payload['sdk']}\n---\n".encode()
            entries = {}
            for path, data in files.items():
                sha = git_blob_sha1(data)
                repo.put_blob(sha, data)
                entries[path] = {"sha": sha, "size": len(data), "lfs": False}
            commit = repo.write_commit(None, "initial commit", "", entries)
            repo.set_ref("refs/heads/main", commit["id"])
            repo.save_meta(meta)  # last: the repo "exists" only once it is complete
        return json_response({"url": self._repo_url(repo), "name": repo.id, "id": commit["id"][:24]})

    def _api_delete_repo(self, request: Request) -> Response:
        """Delete a repo (moved aside first, so it disappears at once)."""
        self._require(request, "write")
        payload = request.json()
        repo_id = f"{payload.get('organization') or USER}/{payload.get('name')}"
        repo = Repo(self.root, payload.get("type") or "model", repo_id)
        with self._write_lock:
            if not NAME_RE.match(payload.get("name") or "") or not repo.exists():
                raise repo_not_found(anonymous=False)
            trash = repo.dir.with_name(f".deleted-{uuid.uuid4().hex}")
            os.replace(repo.dir, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return json_response({})

    def _api_update_settings(self, request: Request) -> Response:
        """Change visibility (`private` or `visibility`) / `gated`."""
        self._require(request, "write")
        repo, payload = self._repo(request), request.json()
        with self._write_lock:
            meta = repo.meta()
            if "private" in payload:
                meta["private"] = bool(payload["private"])
            if "visibility" in payload:
                meta["private"] = payload["visibility"] != "public"
            if "gated" in payload:
                meta["gated"] = payload["gated"]
            repo.save_meta(meta)
        return json_response({})

    def _api_repo_info(self, request: Request) -> Response:
        """model_info / space_info / dataset_info (optionally at a revision)."""
        repo = self._repo(request)
        cid, commit = self._resolve(repo, request)
        meta, files = repo.meta(), commit["files"]
        with_blobs = is_true(request.arg("blobs"))
        siblings = []
        for path in sorted(files):
            sibling = {"rfilename": path}
            if with_blobs:
                entry = tree_entry(path, files[path])
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if "lfs" in entry:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {"size": lfs["size"], "sha256": lfs["oid"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
            "id": repo.id,
            "author": repo.id.split("/")[0],
            "sha": cid,
            "lastModified": commit["date"],
            "createdAt": meta["createdAt"],
            "private": meta["private"],
            "gated": meta.get("gated", False),
            "disabled": False,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e["size"] for e in files.values()),
        }
        if repo.type == "model":
            info.update(modelId=repo.id, downloads=0)
        if repo.type == "space":
            info["sdk"] = meta["sdk"]
        return json_response(info)

    # ---- endpoints: reading trees, refs and history ----------------------------------------------------------------

    def _api_tree(self, request: Request) -> Response:
        """List a folder (or everything below it with `recursive`), paginated with a Link header."""
        repo = self._repo(request)
        _, commit = self._resolve(repo, request)
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
            headers["Link"] = f'<{self.url}{request.path}?{urlencode(query)}>; rel="next"'
        return json_response(entries[start : start + page_size], headers=headers)

    def _api_paths_info(self, request: Request) -> Response:
        """Info about given paths (form-encoded `paths=`); unknown paths are skipped."""
        repo = self._repo(request)
        _, commit = self._resolve(repo, request)
        files, folders = commit["files"], folders_of(commit["files"])
        paths = parse_qs(request.body().decode()).get("paths", [])
        result = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                result.append(tree_entry(path, files[path]))
            elif path in folders:
                result.append(folder_entry(path, files))
        return json_response(result)

    def _api_list_refs(self, request: Request) -> Response:
        """Branches, tags and (with include_prs) pull-request refs."""
        repo = self._repo(request)

        def refs(kind: str, prefix: str) -> list[dict]:
            return [{"name": n, "ref": f"{prefix}{n}", "targetCommit": c} for n, c in repo.refs(kind).items()]

        body = {"branches": refs("heads", "refs/heads/"), "converts": [], "tags": refs("tags", "refs/tags/")}
        if is_true(request.arg("include_prs")):
            body["pullRequests"] = sorted(refs("pr", "refs/pr/"), key=lambda r: int(r["name"]))
        return json_response(body)

    def _api_list_commits(self, request: Request) -> Response:
        """History of a revision, newest first."""
        repo = self._repo(request)
        cid, _ = self._resolve(repo, request)
        return json_response(
            [
                {
                    "id": c["id"],
                    "title": c["message"],
                    "message": c["description"],
                    "date": c["date"],
                    "authors": [{"user": c["author"]}],
                }
                for c in repo.history(cid)
            ]
        )

    # ---- endpoints: writing ----------------------------------------------------------------------------------------

    def _api_preupload(self, request: Request) -> Response:
        """Tell the client, per file, whether to send it inline ("regular") or through LFS, and its current oid."""
        self._require(request, "read" if is_true(request.arg("create_pr")) else "write")
        repo = self._repo(request)
        _, commit = self._resolve(repo, request)
        payload = request.json()
        files = commit["files"]
        lfs_patterns = repo.lfs_patterns(files)
        ignore = [line.strip() for line in (payload.get("gitIgnore") or "").splitlines()]
        ignore = [p for p in ignore if p and not p.startswith("#")]
        answer = []
        for item in payload.get("files", []):
            path, size = item["path"], int(item["size"])
            lfs = size >= MAX_REGULAR_FILE_SIZE or matches_any(path, lfs_patterns)
            current = files.get(path)
            answer.append(
                {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": matches_any(path, ignore),
                    "oid": current["sha"] if current else None,
                }
            )
        return json_response({"files": answer, "commitOid": commit["id"]})

    def _api_commit(self, request: Request) -> Response:
        """Apply an ndjson commit (header, file, lfsFile, deletedFile, deletedFolder) atomically."""
        create_pr = is_true(request.arg("create_pr"))
        self._require(request, "read" if create_pr else "write")
        repo = self._repo(request)
        rev = unquote(request.params["rev"])
        target = repo.branch_ref(rev)
        if target is None:
            if repo.resolve(rev) is not None:
                raise HubError(400, f"Invalid rev id: {rev} is not a branch; commits go to branches or PR refs")
            raise revision_not_found(rev)

        try:
            lines = [json.loads(line) for line in request.body().splitlines() if line.strip()]
        except ValueError:
            raise HubError(400, "The commit body must be ndjson") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of a commit must be its header")
        header = lines[0]["value"]
        if not (header.get("summary") or "").strip():
            raise HubError(400, "A commit needs a non-empty summary")

        with self._write_lock:
            head = repo.ref(target)
            if head is None:  # deleted since we looked
                raise revision_not_found(rev)
            parent = header.get("parentCommit")
            if parent and not create_pr and not head.startswith(parent):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            base = repo.resolve(parent) if (create_pr and parent) else head
            if base is None:
                raise revision_not_found(parent)
            files = dict(repo.commit(base)["files"])
            for op in lines[1:]:
                self._apply_operation(repo, files, op.get("key"), op.get("value") or {})
            commit = repo.write_commit(base, header["summary"], header.get("description") or "", files)
            if create_pr:
                number = max((int(n) for n in repo.refs("pr")), default=0) + 1
                target = f"refs/pr/{number}"
            repo.set_ref(target, commit["id"])  # the atomic publish step

        commit_url = f"{self._repo_url(repo)}/commit/{commit['id']}"
        body = {"success": True, "commitOid": commit["id"], "commitUrl": commit_url}
        if create_pr:
            body["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{target.rsplit('/', 1)[1]}"
        return json_response(body)

    @staticmethod
    def _apply_operation(repo: Repo, files: dict, key: str | None, value: dict) -> None:
        """Apply one commit line to the file map (blobs are written before the commit is published)."""
        path = (value.get("path") or "").strip("/")
        if key in ("file", "lfsFile", "deletedFile") and (not path or ".." in path.split("/")):
            raise HubError(400, f"Invalid path in commit: {value.get('path')!r}")
        if key == "file":
            data = base64.b64decode(value.get("content") or "")
            if len(data) > MAX_REGULAR_FILE_SIZE:
                raise HubError(400, f"{path} is larger than 10 MiB: it must be uploaded with Git LFS")
            sha = git_blob_sha1(data)
            repo.put_blob(sha, data)
            files[path] = {"sha": sha, "size": len(data), "lfs": False}
        elif key == "lfsFile":
            oid = value.get("oid") or ""
            size = value.get("size")
            if not SHA256_RE.match(oid) or not repo.has_blob(oid, size):
                raise HubError(422, f"LFS object {oid} for {path} was not uploaded (or has another size)")
            files[path] = {"sha": oid, "size": repo.blob_path(oid).stat().st_size, "lfs": True}
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
        elif key == "deletedFolder":
            inside = [p for p in files if p.startswith(path + "/")] if path else list(files)
            if not inside:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
            for p in inside:
                del files[p]
        else:
            raise HubError(400, f"Unknown commit operation: {key!r}")

    def _api_create_branch(self, request: Request) -> Response:
        """Create a branch at `startingPoint` (default: head of main)."""
        self._require(request, "write")
        repo, branch = self._repo(request), unquote(request.params["rev"])
        if branch.startswith("refs/") or not REF_NAME_RE.match(branch) or ".." in branch:
            raise HubError(400, f"Invalid reference for a branch: {branch}")
        start = request.json().get("startingPoint") or "main"
        with self._write_lock:
            if repo.ref(f"refs/heads/{branch}") is not None:
                raise HubError(409, "Reference already exists")
            cid = repo.resolve(start)
            if cid is None:
                raise revision_not_found(start)
            repo.set_ref(f"refs/heads/{branch}", cid)
        return json_response({})

    def _api_delete_branch(self, request: Request) -> Response:
        """Delete a branch (not main)."""
        self._require(request, "write")
        repo, branch = self._repo(request), unquote(request.params["rev"])
        if branch == "main":
            raise HubError(403, "Cannot delete the default branch")
        with self._write_lock:
            if repo.ref(f"refs/heads/{branch}") is None:
                raise revision_not_found(branch)
            repo.delete_ref(f"refs/heads/{branch}")
        return json_response({})

    def _api_create_tag(self, request: Request) -> Response:
        """Tag the commit a revision resolves to."""
        self._require(request, "write")
        repo = self._repo(request)
        cid, _ = self._resolve(repo, request)
        tag = request.json().get("tag") or ""
        if tag.startswith("refs/") or not REF_NAME_RE.match(tag) or ".." in tag:
            raise HubError(400, f"Invalid tag name: {tag}")
        with self._write_lock:
            if repo.ref(f"refs/tags/{tag}") is not None:
                raise HubError(409, "Tag already exists")
            repo.set_ref(f"refs/tags/{tag}", cid)
        return json_response({})

    def _api_delete_tag(self, request: Request) -> Response:
        """Delete a tag."""
        self._require(request, "write")
        repo, tag = self._repo(request), unquote(request.params["rev"])
        with self._write_lock:
            if repo.ref(f"refs/tags/{tag}") is None:
                raise revision_not_found(tag)
            repo.delete_ref(f"refs/tags/{tag}")
        return json_response({})

    # ---- endpoints: Space variables & secrets ----------------------------------------------------------------------

    def _variables(self, repo: Repo) -> dict:
        """Variables as the API shows them: {key: {value, description, updatedAt}}."""
        return repo.meta().get("variables", {})

    def _api_get_variables(self, request: Request) -> Response:
        """List a Space's variables (authenticated)."""
        self._require(request, "read")
        return json_response(self._variables(self._repo(request)))

    def _api_add_variable(self, request: Request) -> Response:
        """Add or update a Space variable."""
        self._require(request, "write")
        repo, payload = self._repo(request), request.json()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", payload.get("key") or ""):
            raise HubError(400, "Invalid variable key")
        with self._write_lock:
            meta = repo.meta()
            variable = {"value": str(payload.get("value", "")), "updatedAt": now_iso()}
            if payload.get("description") is not None:
                variable["description"] = payload["description"]
            meta.setdefault("variables", {})[payload["key"]] = variable
            repo.save_meta(meta)
        return json_response(meta["variables"])

    def _api_delete_variable(self, request: Request) -> Response:
        """Delete a Space variable (missing keys are ignored, like the Hub)."""
        self._require(request, "write")
        repo, key = self._repo(request), request.json().get("key")
        with self._write_lock:
            meta = repo.meta()
            meta.setdefault("variables", {}).pop(key, None)
            repo.save_meta(meta)
        return json_response(meta["variables"])

    def _api_add_secret(self, request: Request) -> Response:
        """Add a Space secret. Only its key and description are kept: secret values are write-only."""
        self._require(request, "write")
        repo, payload = self._repo(request), request.json()
        with self._write_lock:
            meta = repo.meta()
            secret = {"description": payload.get("description"), "updatedAt": now_iso()}
            meta.setdefault("secrets", {})[payload["key"]] = secret
            repo.save_meta(meta)
        return json_response({})

    def _api_delete_secret(self, request: Request) -> Response:
        """Delete a Space secret."""
        self._require(request, "write")
        repo, key = self._repo(request), request.json().get("key")
        with self._write_lock:
            meta = repo.meta()
            meta.setdefault("secrets", {}).pop(key, None)
            repo.save_meta(meta)
        return json_response({})

    # ---- endpoints: LFS --------------------------------------------------------------------------------------------

    def _api_lfs_batch(self, request: Request) -> Response:
        """git-lfs batch API: a signed upload URL (+ verify) per missing object, nothing for stored ones."""
        payload = request.json()
        # Writing to a branch needs write access; without `ref` it is a PR upload, which read access may do.
        self._require(request, "write" if payload.get("ref") else "read")
        repo = self._repo(request)
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
                upload_path = self._storage_path("lfs-upload", repo, oid)
                upload_url = f"{self.storage_url}{upload_path}?{self._sign(upload_path)}"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {
                            "upload": {"href": upload_url, "expires_in": SIGNED_URL_TTL_S},
                            "verify": {"href": f"{self.url}/{repo.url_path}.git/info/lfs/objects/verify", "header": {}},
                        },
                    }
                )
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return json_response(body, headers={"Content-Type": "application/vnd.git-lfs+json"})

    def _api_lfs_upload(self, request: Request) -> Response:
        """PUT of an LFS object to its pre-signed URL: content must hash to the oid."""
        repo = self._storage_repo(request)
        oid = request.params["oid"]
        size = repo.put_blob_stream(oid, request.body_chunks())
        logger.debug("hubserver: stored LFS object %s (%d bytes) in %s", oid, size, repo.id)
        return Response(200, headers={"ETag": f'"{oid}"'})

    def _api_lfs_verify(self, request: Request) -> Response:
        """Confirm an LFS object arrived complete."""
        self._require(request, "read")
        repo, payload = self._repo(request), request.json()
        oid, size = payload.get("oid", ""), payload.get("size")
        if not SHA256_RE.match(oid) or not repo.has_blob(oid):
            raise HubError(404, f"Object {oid} not found")
        if repo.blob_path(oid).stat().st_size != size:
            raise HubError(422, f"Object {oid} has another size than {size}")
        return json_response({"success": True})

    # ---- endpoints: downloads --------------------------------------------------------------------------------------

    def _api_resolve(self, request: Request) -> Response:
        """File download (GET/HEAD). Regular files are served here; LFS files redirect to the storage origin."""
        repo = self._repo(request)
        cid, commit = self._resolve(repo, request)
        path = unquote(request.params["path"])
        entry = commit["files"].get(path)
        if entry is None:  # X-Repo-Commit lets the client cache the non-existence for this commit
            raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": cid})
        headers = {"X-Repo-Commit": cid, "ETag": f'"{entry["sha"]}"'}
        if not entry["lfs"]:
            content_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
            headers["Content-Type"] = content_type
            return file_response(repo.blob_path(entry["sha"]), request.headers.get("Range"), headers)
        cdn_path = self._storage_path("cdn-lfs", repo, entry["sha"])
        location = f"{self.storage_url}{cdn_path}?{self._sign(cdn_path, filename=path.rsplit('/', 1)[-1])}"
        headers.update(
            {
                "Location": location,
                "X-Linked-Etag": f'"{entry["sha"]}"',
                "X-Linked-Size": str(entry["size"]),
                "Content-Type": "text/plain; charset=utf-8",
            }
        )
        return Response(302, f"Found. Redirecting to {location}".encode(), headers)

    def _api_cdn_download(self, request: Request) -> Response:
        """The CDN side of an LFS download: signed, unauthenticated, range-capable."""
        repo = self._storage_repo(request)
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


# --------------------------------------------------------------------------------------------------------------------
# Seed data
# --------------------------------------------------------------------------------------------------------------------

TIMM_RESNET50_REPO = "timm/resnet50.a1_in1k"
TIMM_RESNET50_README = """---
tags:
- image-classification
- timm
library_name: timm
license: apache-2.0
datasets:
- imagenet-1k
---
# Model card for resnet50.a1_in1k (test fixture: RANDOM weights)
"""


def seed_timm_resnet50(server: HubServer, token: str) -> None:
    """Publish `timm/resnet50.a1_in1k` with random weights, through the real client, unless it is already there.

    The files mirror timm's own Hub repo: a timm-format config.json (architecture, num_classes, num_features,
    global_pool, pretrained_cfg) and model.safetensors, so `timm.create_model('resnet50.a1_in1k', pretrained=True)`
    and `timm.create_model('hf-hub:timm/resnet50.a1_in1k', pretrained=True)` both download from this server.
    """
    if "model.safetensors" in next(iter(server.commits(TIMM_RESNET50_REPO)), {}).get("files", {}):
        return  # persistent storage already has it

    import safetensors.torch
    import timm
    import torch
    from huggingface_hub import HfApi

    with torch.random.fork_rng(devices=[]):  # deterministic weights without touching the caller's RNG
        torch.manual_seed(0)
        model = timm.create_model("resnet50.a1_in1k", pretrained=False)
    cfg = model.pretrained_cfg
    hub_keys = ("tag", "custom_load", "input_size", "test_input_size", "fixed_input_size", "interpolation", "crop_pct",
                "test_crop_pct", "crop_mode", "mean", "std", "num_classes", "pool_size", "first_conv", "classifier")
    config = {
        "architecture": cfg["architecture"],
        "num_classes": model.num_classes,
        "num_features": model.num_features,
        "global_pool": "avg",
        "pretrained_cfg": {key: cfg[key] for key in hub_keys if key in cfg},
    }
    api = HfApi(endpoint=server.url, token=token)
    with tempfile.TemporaryDirectory(prefix="seed-resnet50-") as folder:
        safetensors.torch.save_file(model.state_dict(), os.path.join(folder, "model.safetensors"))
        Path(folder, "config.json").write_text(json.dumps(config, indent=2))
        Path(folder, "README.md").write_text(TIMM_RESNET50_README)
        api.create_repo(TIMM_RESNET50_REPO, exist_ok=True)
        api.upload_folder(
            repo_id=TIMM_RESNET50_REPO, folder_path=folder, commit_message="Add random-weight resnet50.a1_in1k"
        )
