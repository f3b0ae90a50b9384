"""`python -m space deploy`: what the Space receives (committed files only, one commit), how it is created
(variables, secrets and hardware in the create call), private models (the HF_TOKEN secret), redeploys,
requirements per hardware, and one-line errors that change nothing on the Hub.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from app_fixtures import ROOT
from deploy_fixtures import git, make_checkout, model_repo

from space.deploy import CPU_HARDWARE, TORCH_CPU_INDEX, bundle, committed_files, deploy_space, requirements_for


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A clean clone-like git repository of the app (shared: tests that dirty one make their own)."""
    return make_checkout(tmp_path_factory.mktemp("checkout") / "repo")


@pytest.fixture
def space_id() -> str:
    return f"testorg/space-{uuid.uuid4().hex[:8]}"


def remote_text(space_id: str, path: str) -> str:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(space_id, path, repo_type="space")).read_text()


def pin(name: str) -> str:
    """`name==version` as space/requirements.txt pins it."""
    return next(line for line in (ROOT / "space" / "requirements.txt").read_text().splitlines()
                if line.startswith(f"{name}=="))


def deploy_cli(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m space deploy ...` run from `checkout`, as a user runs it from their clone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "space", "deploy", *args], cwd=checkout, capture_output=True,
                          text=True, timeout=300, env=env)


# ---- pure parts ----------------------------------------------------------------------------------------------------

def test_requirements_follow_the_hardware(checkout):
    files, head, left_out = committed_files(checkout)
    assert len(head) == 40 and left_out == []
    text = files["space/requirements.txt"].decode()
    for gpu in ("zero-a10g", "t4-small", "a10g-large"):
        assert requirements_for(text, gpu) == text  # PyPI's torch: the CUDA build
    for cpu in CPU_HARDWARE:
        lines = requirements_for(text, cpu).splitlines()
        assert lines[0] == f"--extra-index-url {TORCH_CPU_INDEX}"
        torch_pins = [line for line in lines if line.startswith(("torch==", "torchvision=="))]
        assert len(torch_pins) == 2 and all(line.split()[0].endswith("+cpu") for line in torch_pins), torch_pins
        others = [line for line in lines[1:] if line not in torch_pins]
        assert others == [line for line in text.splitlines() if not line.startswith(("torch==", "torchvision=="))]
    shipped = bundle(files, "org/model", "cpu-basic")
    assert shipped["app.py"] == b"from space.__main__ import main\n\nmain()\n"
    assert b"models:\n  - org/model\n" in shipped["README.md"]
    assert "space/README.md" not in shipped and "space/requirements.txt" not in shipped
    assert set(shipped) == {p for p in files if p not in ("space/README.md", "space/requirements.txt")} | {
        "README.md", "requirements.txt", "app.py"}


# ---- deploys against the test Hub ------------------------------------------------------------------------------

def test_new_space_gets_variables_secret_and_hardware_in_its_create_call(hub_server, hub_token, repo_id, space_id,
                                                                           checkout, tmp_path):
    from huggingface_hub import HfApi

    model_repo(repo_id, tmp_path, private=True)
    seen = len(hub_server.requests)
    done = deploy_cli(checkout, space_id, "--model", repo_id, "--revision", "v1", "--hardware", "zero-a10g")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"serving {repo_id}@v1 on zero-a10g" in out
    assert f"{repo_id} is private: your Hugging Face token is stored as the Space secret HF_TOKEN" in out
    assert hub_token not in out + done.stderr  # never printed
    # One create call carried everything: no variable, secret or hardware call afterwards.
    calls = [(r.method, r.path) for r in hub_server.requests[seen:]]
    assert not [c for c in calls if c[1].endswith(("/variables", "/secrets", "/hardware"))], calls
    commits = hub_server.commits(space_id, "space")
    assert len(commits) == 2  # the repo's creation, then ONE commit with the app
    api = HfApi()
    assert {k: v.value for k, v in api.get_space_variables(space_id).items()} == {"MODEL_ID": repo_id,
                                                                                 "MODEL_REVISION": "v1"}
    assert hub_server.space_secrets(space_id) == {"HF_TOKEN": hub_token}
    assert api.get_space_runtime(space_id).requested_hardware == "zero-a10g"
    pins = remote_text(space_id, "requirements.txt").splitlines()
    assert pin("torch") in pins and "--extra-index-url" not in "".join(pins)  # a GPU Space: the CUDA build
    tracked = set(git(checkout, "ls-files", "space", "hub").split())
    assert set(commits[0]["files"]) == (tracked - {"space/README.md", "space/requirements.txt"}) | {
        "README.md", "requirements.txt", "app.py", ".gitattributes"}


def test_only_committed_files_are_shipped(hub_server, hub_token, repo_id, space_id, tmp_path):
    from huggingface_hub import HfApi

    model_repo(repo_id, tmp_path)
    repo = make_checkout(tmp_path / "clone")
    committed = (repo / "space" / "app.py").read_text()
    (repo / "space" / "app.py").write_text(committed + "\n# an edit in progress\n")
    (repo / "hub" / "scratch.py").write_text("x = 1\n")  # untracked
    (repo / "space" / "__pycache__").mkdir()
    (repo / "space" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")  # ignored by .gitignore
    seen = len(hub_server.requests)
    with pytest.raises(Exception, match=r"uncommitted changes in space/ or hub/ \(hub/scratch.py, space/app.py\): "
                                        r"commit them, or pass --allow-dirty"):
        deploy_space(space_id, repo_id, "v1", checkout=repo)
    assert len(hub_server.requests) == seen  # refused before any call to the Hub
    result = deploy_space(space_id, repo_id, "v1", checkout=repo, allow_dirty=True)
    assert result.left_out == ["hub/scratch.py", "space/app.py"] and result.hardware == "cpu-basic"
    assert remote_text(space_id, "space/app.py") == committed  # the commit, not the edit
    files = set(HfApi().list_repo_files(space_id, repo_type="space"))
    assert "hub/scratch.py" not in files and not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert result.secrets == [] and hub_server.space_secrets(space_id) == {}  # a public model needs no token
    requirements = remote_text(space_id, "requirements.txt")
    assert requirements.startswith(f"--extra-index-url {TORCH_CPU_INDEX}\n")
    assert pin("torchvision") + "+cpu" in requirements.splitlines()


def test_redeploy_moves_the_revision_keeps_the_hardware_and_deletes_old_files(hub_server, hub_token, repo_id,
                                                                              space_id, checkout, tmp_path, capsys,
                                                                              monkeypatch):
    from huggingface_hub import HfApi

    import space.deploy
    from space.__main__ import main

    model_repo(repo_id, tmp_path)
    api = HfApi()
    api.create_tag(repo_id, tag="v2")
    first = deploy_space(space_id, repo_id, "v1", hardware="t4-small", checkout=checkout)
    assert first.created and first.hardware == "t4-small"
    api.upload_file(path_or_fileobj=b"x = 1\n", path_in_repo="old_module.py", repo_id=space_id, repo_type="space")
    second = deploy_space(space_id, repo_id, "v2", checkout=checkout)
    assert not second.created and second.hardware == "t4-small"  # an existing Space keeps its hardware
    commits = hub_server.commits(space_id, "space")
    assert len(commits) == 4 and commits[0]["id"] == second.commit  # create, deploy, upload, ONE redeploy
    assert "old_module.py" not in commits[0]["files"] and set(commits[0]["files"]) == set(commits[2]["files"])
    assert api.get_space_variables(space_id)["MODEL_REVISION"].value == "v2"
    monkeypatch.setattr(space.deploy, "CHECKOUT", checkout)
    assert main(["deploy", space_id, "--model", repo_id, "--revision", "v2", "--hardware", "cpu-basic"]) == 0
    out = capsys.readouterr().out
    assert f"in one commit: {hub_server.url}/spaces/{space_id}/commit/" in out and "on cpu-basic" in out
    assert api.get_space_runtime(space_id).requested_hardware == "cpu-basic"
    assert pin("torch") + "+cpu" in remote_text(space_id, "requirements.txt").splitlines()


def test_deploy_errors_are_one_line_and_change_nothing(hub_server, hub_token, repo_id, space_id, checkout,
                                                       tmp_path, capsys, monkeypatch):
    import space.deploy
    from hub.__main__ import main as hub_main
    from space.__main__ import main

    model_repo(repo_id, tmp_path, private=True)
    monkeypatch.setattr(space.deploy, "CHECKOUT", checkout)
    deploy_space(space_id, repo_id, "v1", checkout=checkout)
    before = hub_server.commits(space_id, "space")
    cases = {  # argv -> what the one line must say
        ("--model", "testorg/no-such-model", "--revision", "v1"): "not deploying: model testorg/no-such-model",
        ("--model", repo_id, "--revision", "v9"): "revision 'v9' not found",
        ("--model", repo_id, "--hardware", "a100-huge"): "--hardware 'a100-huge' is not a Space hardware; "
                                                         "choose one of cpu-basic, cpu-upgrade, zero-a10g",
        ("--model", str(tmp_path)): "a Space cannot read a local folder",
    }
    for args, message in cases.items():
        assert main(["deploy", space_id, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and err.startswith("error: "), err
    assert hub_server.commits(space_id, "space") == before  # nothing committed, nothing deleted
    monkeypatch.setattr(space.deploy, "CHECKOUT", tmp_path)  # not a git checkout
    assert main(["deploy", space_id, "--model", repo_id]) == 2
    assert "is not a git checkout with a commit; deploy from a clone" in capsys.readouterr().err
    # The old spelling names the new command instead of deploying from the wrong layer.
    assert hub_main(["deploy-space", "testorg/some-space", "--model", repo_id]) == 2
    assert "python -m space deploy testorg/some-space --model" in capsys.readouterr().err
    with pytest.raises(Exception, match="not a Space id"):
        deploy_space("no-slash", repo_id, "v1", checkout=checkout)
    monkeypatch.setattr(space.deploy, "CHECKOUT", checkout)
    other = f"{space_id}-b"
    assert main(["deploy", other, "--model", repo_id, "--revision", "v1", "--no-token-secret"]) == 0
    out = capsys.readouterr().out
    assert "is private and no token was stored (--no-token-secret): add a Space secret HF_TOKEN" in out
    assert hub_server.space_secrets(other) == {}
