"""Fixtures for the Gradio app tests: a quick model, sample images, the app running in-process.

The app tests need spatial heatmaps (to catch mixed-up activations) more than a good model, so the
model here is a randomly initialised ResNet50 at 64 px (a 2x2 layer4 grid): made in a second, no
training. Models that come from training and the Hub use the session's `tiny_models`.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls out of 127.0.0.1

LABELS = ["ring", "cross", "checker"]
SCORECAM_K = 4  # fast Score-CAM with few channels keeps the suite quick on 2 CPU cores


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_model_folder(out: Path, size: int = 64, labels=LABELS, seed: int = 0, arch: str = "resnet50") -> Path:
    """A model folder (config.json + safetensors) of an untrained timm `arch` at `size` px."""
    import timm
    import torch

    from hub.model import save_model_folder
    from train.data import eval_data_config, trained_pretrained_cfg

    torch.manual_seed(seed)
    model = timm.create_model(arch, num_classes=len(labels), pretrained=False)
    data_config = eval_data_config(model, size)
    model.pretrained_cfg = trained_pretrained_cfg(model, data_config)
    return save_model_folder(model, list(labels), out, data_config)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread while the app tests run (restored after): the app serves several requests at
    once, and on a small shared CPU OpenMP threads that oversubscribe the cores make each call ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def random_model(tmp_path_factory) -> Path:
    """Untrained ResNet50, 64 px, labels ring/cross/checker."""
    return random_model_folder(tmp_path_factory.mktemp("app-model") / "model")


@pytest.fixture(scope="session")
def sample_paths(tmp_path_factory) -> list[Path]:
    """Six synthetic PNGs (two per class, 96 px, different sizes of evidence placement)."""
    import numpy as np

    from train.synthetic import make_image

    out = tmp_path_factory.mktemp("app-samples")
    rng = np.random.default_rng(3)
    paths = []
    for i in range(2):
        for name in LABELS:
            path = out / f"{name}_{i}.png"
            make_image(name, 96, rng)[0].save(path)
            paths.append(path)
    return paths


@pytest.fixture(scope="session")
def boxed_example(tmp_path_factory) -> tuple[Path, tuple[float, float, float, float]]:
    """A sample image with its evidence box beside it as a YOLO file (`ring_boxed.txt`), as `make demo` publishes
    its examples: (image path, the box as fractions x0, y0, x1, y1)."""
    import numpy as np

    from train.synthetic import make_image, yolo_line

    out = tmp_path_factory.mktemp("app-boxed-example")
    img, box = make_image("ring", 96, np.random.default_rng(11))
    path = out / "ring_boxed.png"
    img.save(path)
    path.with_suffix(".txt").write_text(yolo_line(box, 96, 0))
    return path, tuple(v / 96 for v in box)


def examples_of(paths) -> list[tuple[str, str]]:
    """(path, caption) of sample images, as the app's Examples tab takes them."""
    return [(str(p), Path(p).stem) for p in paths]


@pytest.fixture(scope="session")
def served(random_model):
    """The random model as the app serves it (fast Score-CAM, k = SCORECAM_K)."""
    from space.serving import load

    result = load(str(random_model), max_channels=SCORECAM_K)
    assert result.ready, result.error
    return result


@dataclass
class RunningApp:
    """An app launched in this process."""

    url: str
    demo: object


def launch(served, examples=None, **options) -> RunningApp:
    """Build and start the app on a free port without blocking, with the launch options of `python -m space`
    (its upload limit; only the examples' folders allowed besides Gradio's own); call `.demo.close()` when done."""
    from space.app import build_demo, launch_options

    demo = build_demo(served, examples, **options)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(examples))
    return RunningApp(f"http://127.0.0.1:{port}/", demo)


@pytest.fixture(scope="session")
def running_app(served, sample_paths, boxed_example):
    """The app on the random model with the sample images and, last, one with its expert box; 8 model calls at
    once (for the concurrency test) and /classify batched 8 at a time (off by default; the batching test)."""
    app = launch(served, examples_of([*sample_paths, boxed_example[0]]), concurrency=8, max_batch_size=8)
    yield app
    app.demo.close()
