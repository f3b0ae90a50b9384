"""Space settings the Hub keeps beside a Space's files (sdk, hardware, sleep time, variables, secrets) and the
`runtime` block it reports for them.

What huggingface_hub 2.4.0 sends: `create_repo(repo_type="space", ...)` posts to /api/repos/create `sdk`,
`hardware`, `sleepTimeSeconds`, `variables` and `secrets` (each a list of {key, value, description?});
`request_space_hardware` posts {"flavor", "sleepTimeSeconds"?} to /api/spaces/{repo}/hardware. What it reads back
(`SpaceRuntime`): {"stage", "hardware": {"current", "requested"}, "gcTimeout", "storage"}, in `space_info().runtime`
and from GET /api/spaces/{repo}/runtime.

Nothing runs here, so the runtime is derived: RUNNING on the requested hardware once the sdk's app file is on main,
NO_APP_FILE (no current hardware) before, as the Hub shows a Space that has nothing to start.

Who may create what (huggingface.co/docs/hub/spaces-overview, spaces-zerogpu): static Spaces are free for everyone;
Gradio and Docker Spaces run on compute and need a paid plan (PRO for a user, Team or Enterprise for an
organization), except that a free personal account may host Gradio Spaces on ZeroGPU (`zero-a10g`). The Hub
answers a refused creation with HTTP 402 Payment Required (huggingface_hub's create_repo names the case).
Not modelled: the caps on ZeroGPU Spaces (2 free, 10 PRO, 50 per organization), account standing (verified
email, 30 days), and hardware changes of an existing Space (the docs name no rule for them).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .auth import PAID_PLANS, USER
from .errors import HubError
from .storage import Repo, now_iso

SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
APP_FILES = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}
DEFAULT_HARDWARE = "cpu-basic"  # what the Hub gives a Space created without `hardware`
COMPUTE_SDKS = ("gradio", "docker")  # Spaces that run on compute (static ones are served as files)
ZERO_GPU = "zero-a10g"  # the Hub's flavor name for ZeroGPU
# The Hub's answer to a free account creating a Gradio or Docker Space on cpu-basic (reported verbatim from a free
# account in 2026-09). For an organization without a paid plan the Hub's wording is not known: ORG_PLAN_REQUIRED
# follows the docs.
PRO_REQUIRED = ("Static Spaces are free for everyone, but hosting Gradio and Docker Spaces on free cpu-basic "
                "requires a PRO subscription. Subscribe at https://huggingface.co/pro")
ORG_PLAN_REQUIRED = ("Static Spaces are free for everyone, but hosting Gradio and Docker Spaces in an organization "
                     "requires a Team or Enterprise plan. Subscribe at https://huggingface.co/enterprise")
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


def check_plan(plans: dict[str, str | None], namespace: str, sdk: str, hardware: str) -> None:
    """402 when the namespace's plan may not create a `sdk` Space on `hardware` (see the module docstring)."""
    if sdk not in COMPUTE_SDKS or namespace not in plans or plans[namespace] in PAID_PLANS:
        return
    if namespace != USER:
        raise HubError(402, ORG_PLAN_REQUIRED)
    if hardware != ZERO_GPU:
        raise HubError(402, PRO_REQUIRED)


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
