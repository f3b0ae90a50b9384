"""Seed data: `timm/resnet50.a1_in1k` with random weights, so timm's `pretrained=True` path is tested offline.

Published through the real client (create_repo + upload_folder), like any repo a user pushes; the weights are
deterministic (seed 0) without touching the caller's RNG.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import HubServer

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

    # Imported here: conftest must point huggingface_hub at the server before its first import.
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
    namespace = TIMM_RESNET50_REPO.split("/")[0]
    # The seed publishes as timm's maintainers would; the test user may not write there, before or after.
    server.namespaces.add(namespace)
    try:
        publish(api, model, config)
    finally:
        server.namespaces.discard(namespace)


def publish(api, model, config: dict) -> None:
    """create_repo + upload_folder of the weights, config.json and the model card."""
    import safetensors.torch

    with tempfile.TemporaryDirectory(prefix="seed-resnet50-") as folder:
        safetensors.torch.save_file(model.state_dict(), os.path.join(folder, "model.safetensors"))
        Path(folder, "config.json").write_text(json.dumps(config, indent=2))
        Path(folder, "README.md").write_text(TIMM_RESNET50_README)
        api.create_repo(TIMM_RESNET50_REPO, exist_ok=True)
        api.upload_folder(
            repo_id=TIMM_RESNET50_REPO, folder_path=folder, commit_message="Add random-weight resnet50.a1_in1k"
        )
