"""Shared pytest plumbing: an isolated Hugging Face environment pointed at a local Hub-compatible server.

`huggingface_hub` reads HF_ENDPOINT, HF_HOME, offline/xet flags... once, when it is imported. So this module sets
them at import time, before any test module (or timm) imports it, and the session server is started on the port
chosen here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
import uuid

import pytest
from hubserver import HubServer, seed_timm_resnet50

WRITE_TOKEN = "hf_write_token_test"
READ_TOKEN = "hf_read_token_test"


def _free_port() -> int:
    """A port that is free right now on 127.0.0.1 (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _isolate_hf_environment() -> int:
    """Point the client at the local server with a throwaway HF_HOME (cache + token file). Returns the port."""
    if "huggingface_hub" in sys.modules:
        raise RuntimeError("huggingface_hub was imported before tests/conftest.py: HF_ENDPOINT would be ignored")
    port = _free_port()
    hf_home = tempfile.mkdtemp(prefix="hf-home-")
    atexit.register(shutil.rmtree, hf_home, ignore_errors=True)
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_OIDC_RESOURCE", "HUGGINGFACE_CO_STAGING"):
        os.environ.pop(var, None)
    os.environ.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        HF_HOME=hf_home,
        HF_HUB_DISABLE_XET="1",  # our server speaks the LFS protocol, not Xet
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
    )
    return port


def _isolate_temp_files() -> None:
    """The temporary files of the code under test in one folder, removed at exit, not in the shared /tmp.

    Gradio caches uploads and outputs under GRADIO_TEMP_DIR (read when gradio is imported), and gradio_client
    downloads each output into tempfile.gettempdir()/<40 hex>/ and leaves that folder behind, empty: a run of
    the suite used to leave ~100 of each in /tmp. TMPDIR carries the same folder to subprocesses. pytest's own
    folders stay where they were (PYTEST_DEBUG_TEMPROOT, pytest's documented setting), so a failed test's
    tmp_path is still kept for a look afterwards.
    """
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
    root = tempfile.mkdtemp(prefix="explainable-tests-")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.environ.update(TMPDIR=root, GRADIO_TEMP_DIR=os.path.join(root, "gradio"))
    tempfile.tempdir = root


def _one_thread_per_worker() -> None:
    """Under `pytest -n 2` (make test) each of the two workers gets one core: one OpenMP thread, also for the
    processes it starts. Two workers of two threads each on two cores made each torch call ~10x slower (the
    spinning threads of one steal the other's core; see app_fixtures.one_torch_thread)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it is first imported, and by subprocesses


_isolate_temp_files()
_one_thread_per_worker()
HUB_PORT = _isolate_hf_environment()


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> HubServer:
    """The Hub-compatible server at HF_ENDPOINT, seeded with timm/resnet50.a1_in1k (random weights)."""
    server = HubServer(
        tmp_path_factory.mktemp("hub-storage"),
        port=HUB_PORT,
        tokens={WRITE_TOKEN: "write", READ_TOKEN: "read"},
    )
    with server:
        seed_timm_resnet50(server, WRITE_TOKEN)
        yield server


@pytest.fixture
def hub_token(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A write token, also exported as HF_TOKEN for code that relies on the implicit token."""
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    return WRITE_TOKEN


@pytest.fixture
def repo_id() -> str:
    """A fresh model repo id per test (not created)."""
    return f"testorg/model-{uuid.uuid4().hex[:8]}"


# Fixture modules shared by several test files, loaded after the HF environment is set up above.
pytest_plugins = ["train_fixtures", "app_fixtures", "xdist_groups"]
