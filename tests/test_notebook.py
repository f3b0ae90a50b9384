"""examples/quickstart.ipynb runs top to bottom against a model pushed to the test Hub server, and a retrain of it."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from train_fixtures import train_quiet

from hub.publish import push

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_notebook_executes(hub_server, hub_token, repo_id, tiny_models, tiny_data, monkeypatch, tmp_path):
    v1 = push(tiny_models[1], repo_id, tag="auto")
    # v2: the README's retrain, from v1 on the Hub
    retrained = train_quiet(tiny_data, tmp_path / "v2", init=f"{repo_id}@v1", epochs=1, batch_size=8)
    v2 = push(retrained, repo_id, tag="auto")
    image = next((tiny_data / "cross").glob("*.png"))
    # the kernel is a child process: it inherits HF_ENDPOINT (the test server) and these
    monkeypatch.setenv("MODEL_ID", repo_id)
    monkeypatch.setenv("MODEL_REVISION", "v1")
    monkeypatch.setenv("RETRAIN_REVISION", "v2")
    monkeypatch.setenv("IMAGE", str(image))
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "'checker'" in text and "'cross'" in text and "'ring'" in text  # predictions with labels from config.json
    assert "Grad-CAM:" in text and "Score-CAM (fast)" in text
    assert f"v2 (commit {v2.commit}) was retrained from {repo_id}@v1 (commit {v1.commit}): same 3 classes" in text
    assert "{'v1': {" in text and "'v2': {" in text  # both revisions' predictions side by side
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # both overlays of v1, and v1 and v2 side by side
