"""examples/quickstart.ipynb runs top to bottom against a model pushed to the test Hub server."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from hub.publish import push

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_executes(hub_server, hub_token, repo_id, tiny_models, tiny_data, monkeypatch):
    push(tiny_models[1], repo_id, tag="auto")
    image = next((tiny_data / "cross").glob("*.png"))
    # the kernel is a child process: it inherits HF_ENDPOINT (the test server) and these
    monkeypatch.setenv("MODEL_ID", repo_id)
    monkeypatch.setenv("MODEL_REVISION", "v1")
    monkeypatch.setenv("IMAGE", str(image))
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "'checker'" in text and "'cross'" in text and "'ring'" in text  # predictions with labels from config.json
    assert "Grad-CAM:" in text and "Score-CAM (fast)" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # both overlays rendered
