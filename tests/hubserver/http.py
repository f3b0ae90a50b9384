"""HTTP plumbing: raw requests in, `Request` objects to the endpoints, their `Response`s back out.

Stdlib `http.server`, threaded and keep-alive (HTTP/1.1, every response with a Content-Length) like the real Hub, so
the client's connection pool, retries and streaming behave as in production. Bodies are streamed both ways: LFS
uploads are hashed chunk by chunk and downloads honour `Range` (the client resumes interrupted downloads with it).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import HubError

if TYPE_CHECKING:
    from .server import HubServer

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# URL prefixes as the client builds them: the JSON API, the git side (LFS, resolve) and the Space-only API.
REPO_API = r"^/api/(?P<type>model|dataset|space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)"
REPO_GIT = r"^/(?:(?P<type>dataset|space)s/)?(?P<ns>[^/]+)/(?P<name>[^/]+?)"
SPACE_API = r"^/api/(?P<type>space)s/(?P<ns>[^/]+)/(?P<name>[^/]+)"


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


Endpoint = Callable[["HubServer", Request], Response]


@dataclass(frozen=True)
class Route:
    """An endpoint and the requests it answers. HEAD is served by GET routes."""

    method: str
    pattern: re.Pattern
    endpoint: Endpoint
    signed: bool = False  # a pre-signed storage URL: the signature authorises it, an Authorization header is refused


def route(method: str, pattern: str, endpoint: Endpoint, signed: bool = False) -> Route:
    """A Route with its path regex compiled."""
    return Route(method, re.compile(pattern), endpoint, signed)


def is_true(value: str | None) -> bool:
    """Query-string booleans: httpx sends `true`, some callers send `1`."""
    return (value or "").lower() in ("1", "true", "yes")


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    return Response(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})


def file_response(path: Path, range_header: str | None, headers: dict[str, str]) -> Response:
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


class HTTPServer(ThreadingHTTPServer):
    """The threaded socket server (one thread per connection); `hub` answers every request."""

    def __init__(self, address: tuple[str, int], hub: HubServer) -> None:
        self.hub = hub
        super().__init__(address, Handler)  # sets SO_REUSEADDR: a restart can rebind the same port at once


class Handler(BaseHTTPRequestHandler):
    """Turns raw HTTP into calls of `HubServer.serve` and writes its `Response`s back."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub; every response carries a Content-Length
    server_version = "HubServer/1.0"
    server: HTTPServer

    def setup(self) -> None:
        """Track the connection so a stop can cut it (a dead server does not keep serving pooled connections)."""
        super().setup()
        self.server.hub.connections.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        self.server.hub.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:  # the peer (or a kill) already closed the socket
            pass

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Logged by HubServer instead (without query strings, which carry URL signatures)."""

    def log_message(self, fmt: str, *args: Any) -> None:
        """Route http.server's own messages to logging instead of stderr."""
        logger.debug("http.server: " + fmt, *args)

    def do_GET(self) -> None:
        """Every method goes through the same dispatch."""
        self.server.hub.serve(self)

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
