"""The Space installs: its requirements resolve for the Python its README names, on Linux x86_64, with the
gradio of its `sdk_version`, and the pins are ones ZeroGPU supports.

pip resolves from the packages' metadata without installing (`--dry-run`); it needs PyPI, which the
project's machines reach. The CPU variant (`python -m space deploy` on CPU hardware) takes torch and
torchvision from the PyTorch CPU index, which they do not reach: tests/test_deploy.py checks its text.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

from app_fixtures import ROOT

# ZeroGPU's documented Pythons and its list of supported torch versions (huggingface.co/docs/hub/spaces-zerogpu,
# "Supported Versions"). The Space pins the newest Python, and the torch closest to the one the tests run.
ZEROGPU_PYTHONS = ("3.12.12", "3.10.13")
ZEROGPU_TORCH = ("2.8.0", "2.9.1", "2.10.0", "2.11.0")
# A Space's image is Debian with glibc >= 2.28: every manylinux tag up to 2_28 installs there.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)] + ["manylinux2014_x86_64"]


def front_matter(name: str) -> str:
    text = (ROOT / "space" / "README.md").read_text()
    return re.search(rf'^{name}: "?([^"\n]+)"?$', text, re.MULTILINE).group(1)


def pins() -> dict[str, str]:
    """name -> pinned version; an extra (`gradio[mcp]`) is dropped from the name."""
    lines = (ROOT / "space" / "requirements.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {re.sub(r"\[.*\]", "", name): pinned for name, pinned in pairs}


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_space_runs_zerogpus_newest_python_and_the_supported_torch_closest_to_the_tests():
    python = front_matter("python_version")
    assert python in ZEROGPU_PYTHONS and version(python) == max(version(v) for v in ZEROGPU_PYTHONS), python
    tested = next(line.split("==")[1].split()[0] for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.startswith("torch=="))
    # the newest supported torch that is not newer than the tested one (requirements.txt pins 2.14.1: 2.11.0)
    assert pins()["torch"] == max(ZEROGPU_TORCH, key=lambda v: (version(v) <= version(tested), version(v)))
    assert front_matter("sdk") == "gradio" and front_matter("suggested_hardware") == "zero-a10g"
    text = (ROOT / "space" / "README.md").read_text()
    assert "suggested_storage" not in text  # persistent storage is gone: the Hub ignores the key
    # the MCP server needs gradio's [mcp] extra, at the gradio the Space runs
    assert "gradio[mcp]==" + front_matter("sdk_version") in (ROOT / "space" / "requirements.txt").read_text()


def test_requirements_resolve_for_the_spaces_python_and_platform(tmp_path):
    python, gradio = front_matter("python_version"), front_matter("sdk_version")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text((ROOT / "space" / "requirements.txt").read_text() + f"gradio=={gradio}\n")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
           "--python-version", python, *[arg for p in PLATFORMS for arg in ("--platform", p)],
           "--target", str(tmp_path / "target"), "--report", str(report), "--quiet", "-r", str(requirements)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING: Location")]
    assert done.returncode == 0, (f"the Space's requirements do not resolve for Python {python} on Linux x86_64 "
                                  "(this needs PyPI):\n" + "\n".join(errors[-15:]))
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    for name, pinned in {**pins(), "gradio": gradio}.items():
        assert resolved[name.lower().replace("_", "-")] == pinned, name
    for item in json.loads(report.read_text())["install"]:  # every wheel is for this Python (or any Python 3)
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert re.search(rf"-(cp{''.join(python.split('.')[:2])}|py3|py2\.py3)-|-abi3-", wheel), wheel
