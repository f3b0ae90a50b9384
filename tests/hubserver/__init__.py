"""A Hugging Face Hub-compatible HTTP server for tests, on 127.0.0.1 (stdlib only, plus the client's hardware list).

Why it exists: the real Hub is not reachable from CI, but we want the *real* `huggingface_hub` client (2.4.0) and
timm to speak the same protocol they speak in production. Mocking the client would only test our mocks, so this
package implements the server side of the endpoints the client actually calls, with the same JSON shapes, headers
and error conventions. Only the endpoints and options that the product (hub/, train/, space/) calls, directly or
through the client, are here; client features it never uses (delete patterns, commit history, PR listings,
deleting Space variables, file sizes in repo info) are not.

    storage.py        repos on disk: blobs, immutable commits, refs swapped atomically (survives a restart)
    http.py           request / response plumbing, the threaded keep-alive HTTP server
    server.py         HubServer: lifecycle, dispatch, test helpers (`commits`, `space_secrets`)
    auth.py, faults.py, signing.py, errors.py    tokens and roles, fault injection, pre-signed storage URLs, errors
    routes_*.py       the endpoints, one family per file (each module docstring lists its paths)
    spaces.py         Space settings (sdk, hardware, variables, secrets) and the runtime they give
    seed.py           `timm/resnet50.a1_in1k` with random weights
"""

from __future__ import annotations

from .seed import seed_timm_resnet50
from .server import HubServer
from .storage import git_blob_sha1

__all__ = ["HubServer", "git_blob_sha1", "seed_timm_resnet50"]
