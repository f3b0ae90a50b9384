"""The Space exactly as deployed: `python -m space deploy` to the test Hub, the Space repo downloaded into an
empty folder outside the checkout, and run from there the way Spaces run it, twice: a public model deployed by a
free account (the deploy asks for ZeroGPU, `zero-a10g`, and prints the 2-Space note) and a private model by a PRO
account that asks for `cpu-basic` (which the Hub refuses a free account; the CPU-only torch pins are shipped).

ZeroGPU is not reproduced: the test Hub server records the hardware asked for and runs nothing. A real ZeroGPU
Space has the `spaces` package and wraps each model call in `spaces.GPU` (`space.serving.on_gpu`); here, as the
probe checks, `spaces` is absent, so the app runs its model calls plainly on the CPU, as on `cpu-basic`. The
`spaces.GPU` path is tested with a fake `spaces` in tests/test_app.py.

Like a Space: the working folder is the downloaded repo and `python app.py` starts it; nothing of the
checkout is importable (no PYTHONPATH, another folder); HF_HOME is under a home folder that is neither
the working folder nor the temp folder (Gradio serves files only from those two and `allowed_paths`,
so the Examples tab, whose files live in the Hub cache, works only if the app allows them); the
Space's variables and secrets, read back from the test Hub, are its environment. Then headless
Chromium uses every tab, an Examples click, a DICOM through the file box and the Study tab on a DICOM series
included (screenshots in test-artifacts/), and gradio_client calls every named endpoint, /study included.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from app_fixtures import LABELS, free_port
from browser_fixtures import browser, dicom_series, page, use_every_tab  # noqa: F401 - fixtures used by name
from deploy_fixtures import make_checkout, model_repo
from gradio_client import Client, handle_file
from PIL import Image

ENDPOINTS = {"/classify", "/gradcam", "/gradcam_faithfulness", "/scorecam", "/scorecam_faithfulness", "/compare",
             "/study"}
# How each account deploys: (the hardware it asks for, or None for the default; what the Space gets; its note)
ACCOUNTS = {"free": (None, "zero-a10g", "note: ZeroGPU: a free account hosts at most 2 ZeroGPU Spaces"),
            "pro": ("cpu-basic", "cpu-basic", None)}
# gradio 6.31 calls pandas APIs that pandas 3 deprecates, inside its queue: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


def space_environment(space_id: str, hub_server, root: Path, port: int) -> dict[str, str]:
    """What a Space process sees: its variables and secrets, a home of its own, the Hub, the port to serve on."""
    from huggingface_hub import HfApi

    home, tmp = root / "home", root / "tmp"
    tmp.mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(tmp), "HF_HOME": str(home / ".cache" / "hf"),
           "HF_ENDPOINT": os.environ["HF_ENDPOINT"], "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "SPACE_ID": space_id, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: v.value for k, v in HfApi().get_space_variables(space_id).items()})
    env.update(hub_server.space_secrets(space_id))
    return env


def start(app_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`python app.py` in the Space's folder; returns once it answers HTTP 200."""
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=app_dir, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/", timeout=5).status == 200:
                return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    pytest.fail(f"the Space did not start:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("visibility, plan", [("public", "free"), ("private", "pro")])
def test_the_deployed_space_works_in_a_browser_and_through_the_api(visibility, plan, hub_server, hub_token, repo_id,
                                                                   sample_paths, dicom_series, page,  # noqa: F811
                                                                   tmp_path, monkeypatch):
    from huggingface_hub import HfApi, snapshot_download

    model_repo(repo_id, tmp_path, private=visibility == "private", examples=sample_paths[:3])
    checkout = make_checkout(tmp_path / "clone")
    monkeypatch.setitem(hub_server.plans, "testuser", plan)  # the token's user, on this plan for this test
    assert HfApi().whoami()["isPro"] is (plan == "pro")
    asked, hardware, note = ACCOUNTS[plan]
    space_id = f"testuser/space-{uuid.uuid4().hex[:8]}"  # the user's own namespace: its plan decides
    done = subprocess.run([sys.executable, "-m", "space", "deploy", space_id, "--model", repo_id, "--revision", "v1",
                           *(["--hardware", asked] if asked else [])],
                          cwd=checkout, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    assert ("stored as the Space secret HF_TOKEN" in done.stdout) is (visibility == "private")
    assert f"serving {repo_id}@v1 on {hardware} " in done.stdout
    notes = [line for line in done.stdout.splitlines() if line.startswith("note: ")]
    assert [line.startswith(note) for line in notes] == ([True] if note else []), done.stdout
    assert HfApi().get_space_runtime(space_id).requested_hardware == hardware

    root = tmp_path / "space-host"  # nothing of the checkout in here
    app_dir = Path(snapshot_download(space_id, repo_type="space", local_dir=str(root / "app")))
    env = space_environment(space_id, hub_server, root, free_port())
    assert ("HF_TOKEN" in env) is (visibility == "private")
    torch_pin = next(line for line in (app_dir / "requirements.txt").read_text().splitlines()
                     if line.startswith("torch=="))
    assert torch_pin.split()[0].endswith("+cpu") is (hardware == "cpu-basic")  # the CPU-only build on CPU hardware
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u, space; print(space.__file__); "
                            "print(u.find_spec('train'), u.find_spec('tests'), u.find_spec('spaces'))"],
                           cwd=app_dir, env=env, capture_output=True, text=True, timeout=120)
    # no `spaces` (ZeroGPU's package): the model calls run unwrapped, on the CPU
    assert probe.stdout.split("\n")[:2] == [str(app_dir / "space" / "__init__.py"), "None None None"], probe.stderr
    log = root / "app.log"
    proc = start(app_dir, env, log)
    try:
        assert f"serving {repo_id}@v1" in log.read_text()
        cache = Path(env["HF_HOME"])
        examples = sorted(cache.rglob("examples/*.png"))
        assert [p.stem for p in examples] == sorted(p.stem for p in sample_paths[:3])
        for folder in (app_dir, Path(env["TMPDIR"])):  # served from neither: only allowed_paths lets Gradio
            assert not any(p.resolve().is_relative_to(folder) for p in examples)
        url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
        use_every_tab(page, url, sample_paths[3], (1, sample_paths[1].stem), LABELS, f"deployed-{plan}-",
                      dicom_series)
        assert "model-error" not in page.content()
        assert "device cpu" in page.locator("#header").inner_text().replace("`", "")

        client = Client(url, verbose=False)
        assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ENDPOINTS
        image = handle_file(str(sample_paths[4]))
        top = client.predict(image, api_name="/classify")
        assert top["label"] in LABELS and len(top["confidences"]) == len(LABELS)
        for method in ("gradcam", "scorecam"):
            (heat, over), png, summary, details, _ = client.predict(image, "cross", 0.5, api_name=f"/{method}")
            assert details["label"] == "cross" and details["method"] == method
            assert Image.open(png).size == Image.open(heat).size == (96, 96)
            summary, figures, curves = client.predict(api_name=f"/{method}_faithfulness")  # of the map just made
            assert figures["label"] == "cross" and 0.0 <= figures["faithfulness"]["deletion"] <= 1.0
            assert "deletion **" in summary and Image.open(curves).size == (320, 200)
        _, score_png, _, _, table, both = client.predict(image, "", 0.5, api_name="/compare")
        assert both["gradcam"]["target"] == both["scorecam"]["target"] and "Deletion" in table
        assert set(both["agreement"]) == {"rank_correlation", "top_overlap"}
        dicom = client.predict(handle_file(str(dicom_series[0])), api_name="/classify")  # IM0001: no extension
        assert dicom["label"] in LABELS
        text, table, gallery, downloads, chosen = client.predict(
            [handle_file(str(p)) for p in reversed(dicom_series)], [], api_name="/study")
        assert f"(dicom, {len(dicom_series)} slices)" in text and "Rule: mean probability" in text
        assert [row[2] for row in table["data"]] == [p.name for p in dicom_series]  # by InstanceNumber
        assert len(gallery) == len(dicom_series) and Image.open(chosen).size == (48, 40)
        assert [Path(d).name for d in downloads] == ["slices.csv", "studies.csv", "overlays.zip"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
