"""Space settings the Hub keeps beside a Space's files (sdk, hardware, sleep time, variables, secrets) and the
`runtime` block it reports for them.

What huggingface_hub 2.4.0 sends: `create_repo(repo_type="space", ...)` posts to /api/repos/create `sdk`,
`hardware`, `sleepTimeSeconds`, `variables` and `secrets` (each a list of {key, value, description?});
`request_space_hardware` posts {"flavor", "sleepTimeSeconds"?} to /api/spaces/{repo}/hardware. What it reads back
(`SpaceRuntime`): {"stage", "hardware": {"current", "requested"}, "gcTimeout", "storage"}, in `space_info().runtime`
and from GET /api/spaces/{repo}/runtime.

Nothing runs here, so the runtime is derived: RUNNING on the requested hardware once the sdk's app file is on main,
NO_APP_FILE (no current hardware) before, as the Hub shows a Space that has nothing to start.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .errors import HubError
from .storage import Repo, now_iso

SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
APP_FILES = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}
DEFAULT_HARDWARE = "cpu-basic"  # what the Hub gives a Space created without `hardware`
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # variables and secrets become environment variables


@functools.cache
def hardware_names() -> frozenset[str]:
    """The hardware flavors the Hub accepts: huggingface_hub's own `SpaceHardware` list."""
    from huggingface_hub import SpaceHardware  # late: conftest configures the client before its first import

    return frozenset(flavor.value for flavor in SpaceHardware)


def check_hardware(flavor: Any) -> str:
    """`flavor` if the Hub knows it, else the Hub's 400."""
    if flavor not in hardware_names():
        raise HubError(400, f"Invalid hardware flavor {flavor!r}: must be one of {', '.join(sorted(hardware_names()))}")
    return flavor


def check_sleep_time(seconds: Any) -> int | None:
    """Seconds of inactivity before the Space sleeps (-1: never), or None when not given."""
    if seconds is not None and (type(seconds) is not int or seconds < -1):
        raise HubError(400, f"Invalid sleepTimeSeconds {seconds!r}: a number of seconds, or -1 to never sleep")
    return seconds


def key_value(item: Any, kind: str) -> tuple[str, dict]:
    """(key, stored entry) for one {"key", "value", "description"?}, as the client sends a variable or a secret."""
    key = item.get("key") if isinstance(item, dict) else None
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise HubError(400, f"Invalid {kind} key {key!r}: letters, digits and underscores, not starting with a digit")
    stored = {"value": str(item.get("value", "")), "updatedAt": now_iso()}
    if item.get("description") is not None:
        stored["description"] = item["description"]
    return key, stored


def key_values(items: Any, kind: str) -> dict[str, dict]:
    """{key: stored entry} for create_repo's `variables` / `secrets` lists."""
    if not isinstance(items, list):
        raise HubError(400, f"{kind}s must be a list of {{key, value, description}}")
    return dict(key_value(item, kind) for item in items)


def new_space(payload: dict) -> tuple[dict, dict[str, dict]]:
    """(metadata, secrets) of a Space from a create payload, all checked before anything is created."""
    if payload.get("sdk") not in SPACE_SDKS:
        raise HubError(400, f"A Space needs an sdk: one of {', '.join(SPACE_SDKS)}")
    meta = {
        "sdk": payload["sdk"],
        "hardware": check_hardware(payload.get("hardware") or DEFAULT_HARDWARE),
        "sleepTime": check_sleep_time(payload.get("sleepTimeSeconds")),
        "variables": key_values(payload.get("variables") or [], "variable"),
    }
    return meta, key_values(payload.get("secrets") or [], "secret")


def runtime(repo: Repo) -> dict:
    """The Space's runtime block, as `SpaceRuntime` parses it."""
    meta = repo.meta()
    main = repo.resolve("main")
    running = main is not None and APP_FILES[meta["sdk"]] in repo.commit(main)["files"]
    return {
        "stage": "RUNNING" if running else "NO_APP_FILE",
        "hardware": {"current": meta["hardware"] if running else None, "requested": meta["hardware"]},
        "storage": None,
        "gcTimeout": meta["sleepTime"],
        "sdk": meta["sdk"],
    }
