"""The server object tests hold: lifecycle (start, stop, restart on the same port), dispatch of each request to its
endpoint, and read-only views of storage for assertions.

The endpoints live in the `routes_*` modules; each is a function `(hub, request) -> Response` that raises HubError
for error answers. Storage is under `root`, so a stopped server (or one killed by `kill_on`) restarted on the same
port serves the same repos, as the real Hub does after an outage.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from . import routes_account, routes_commit, routes_download, routes_lfs, routes_read, routes_repo, routes_space
from .auth import ORGS, PLANS, USER, authenticate
from .errors import HubError, repo_not_found, revision_not_found
from .faults import FaultInjector
from .http import Handler, HTTPServer, RecordedRequest, Request, Route, json_response
from .signing import Signer
from .storage import NAME_RE, Repo

logger = logging.getLogger(__name__)

ROUTES: list[Route] = [
    *routes_account.ROUTES,
    *routes_repo.ROUTES,
    *routes_read.ROUTES,
    *routes_commit.ROUTES,
    *routes_lfs.ROUTES,
    *routes_download.ROUTES,
    *routes_space.ROUTES,
]


class HubServer(FaultInjector):
    """A Hub-compatible server on 127.0.0.1, persistent under `root`, restartable on the same port.

    `tokens` maps token -> "write" | "read". Use as a context manager or `start()` / `stop()`.
    """

    def __init__(self, root: Path, port: int = 0, tokens: dict[str, str] | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.tokens = dict(tokens or {})
        self.plans = dict(PLANS)  # namespace -> plan; a test may set hub.plans[USER] = "pro" (and restore it)
        self.namespaces = {USER, *ORGS}  # where the test user's tokens may write; live, like plans
        self.requests: list[RecordedRequest] = []  # every request, in arrival order
        self.signer = Signer()
        self.write_lock = threading.Lock()  # serialises "read ref -> write commit -> replace ref" and metadata edits
        self.connections: set[socket.socket] = set()  # open keep-alive connections, cut by stop()
        self._httpd: HTTPServer | None = None
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
                httpd = HTTPServer(("127.0.0.1", self.port), self)
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
            for conn in list(self.connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed by the peer
                    pass
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _die(self, handler: Handler, stopped: threading.Event) -> None:
        """Simulate a crash mid-request: drop the connection unanswered and stop (from another thread)."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client may have gone already
            pass

        def stop_then_signal() -> None:
            self.stop()  # not on this handler thread: shutdown() waits for serve_forever, which waits for us
            stopped.set()

        threading.Thread(target=stop_then_signal, name="hubserver-kill", daemon=True).start()

    # ---- test helpers: storage as it is, without going through HTTP -----------------------------------------------

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

    def space_secrets(self, space_id: str) -> dict[str, str]:
        """A Space's secrets as {key: value}: what the Space would see, which no API call can read back."""
        return {key: secret["value"] for key, secret in Repo(self.root, "space", space_id).secrets().items()}

    # ---- dispatch --------------------------------------------------------------------------------------------------

    def serve(self, handler: Handler) -> None:
        """Handle one HTTP request: faults, routing, auth, endpoint, error mapping, logging."""
        method = handler.command
        split = urlsplit(handler.path)
        path, host = split.path, (handler.headers.get("Host") or "")
        record = RecordedRequest(method, path, host, handler.headers.get("Authorization") is not None)
        self.requests.append(record)

        if (stopped := self.take_kill(method, path)) is not None:
            logger.info("hubserver: killed on %s %s", method, path)
            self._die(handler, stopped)
            return

        consumed = False

        def body_chunks() -> Iterator[bytes]:
            nonlocal consumed
            consumed = True
            yield from handler.iter_body()

        try:
            if (status := self.take_failure(method, path)) is not None:
                raise HubError(status, f"Injected failure ({status})")
            found, params = self._route(method, path)
            role = authenticate(self.tokens, handler.headers.get("Authorization"), signed=found.signed)
            request = Request(method, path, parse_qs(split.query), handler.headers, params, role, body_chunks)
            response = found.endpoint(self, request)
        except HubError as error:
            response = json_response(error.body, error.status, error.response_headers())
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
        except OSError:  # the client hung up before reading the answer
            handler.close_connection = True

    @staticmethod
    def _route(method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request and its URL parameters, or a 404/405 HubError."""
        route_method = "GET" if method == "HEAD" else method
        path_matched = False
        for candidate in ROUTES:
            if match := candidate.pattern.match(path):
                path_matched = True
                if candidate.method == route_method:
                    return candidate, {k: v for k, v in match.groupdict().items() if v is not None}
        if path_matched:
            raise HubError(405, f"Method {method} not allowed on {path}")
        raise HubError(404, "Sorry, we can't find the page you are looking for.")

    # ---- shared endpoint logic -------------------------------------------------------------------------------------

    def repo(self, request: Request, write: bool = False) -> Repo:
        """The repo named in the URL. A private repo is visible only to its namespace's members (the Hub cannot
        tell it from a missing one for anyone else); `write`: the caller must be a member (403 otherwise)."""
        params = request.params
        ns, name = unquote(params["ns"]), unquote(params["name"])
        if not (NAME_RE.match(ns) and NAME_RE.match(name)):
            raise repo_not_found(request.role is None)
        repo = Repo(self.root, params.get("type") or "model", f"{ns}/{name}")
        member = request.role is not None and ns in self.namespaces
        if not repo.exists() or (repo.meta()["private"] and not member):
            raise repo_not_found(request.role is None)
        if write and not member:
            raise HubError(403, "You don't have the rights to write to this repository: it belongs to another "
                                "namespace (pass create_pr=1 to open a pull request)")
        return repo

    @staticmethod
    def resolve(repo: Repo, request: Request) -> tuple[str, dict]:
        """(commit id, commit) for the `rev` URL parameter (default branch when absent)."""
        rev = unquote(request.params.get("rev") or "main")
        cid = repo.resolve(rev)
        if cid is None:
            raise revision_not_found(rev)
        return cid, repo.commit(cid)

    def repo_url(self, repo: Repo) -> str:
        """Web URL of a repo, as returned in `url` / `commitUrl` fields."""
        return f"{self.url}/{repo.url_path}"
