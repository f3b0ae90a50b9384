"""`python -m space deploy`: what the Space receives (committed files only, one commit on the head it read), how it
is created (variables, secrets and hardware in the create call; ZeroGPU unless told otherwise, as a free account
must), private models (the HF_TOKEN secret), public ones preloaded, redeploys, requirements per hardware, and
one-line errors that change nothing on the Hub, the plan rule's 402 among them.
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
from hub_races import someone_always_commits_first

from space.deploy import (
    CPU_HARDWARE,
    TORCH_CPU_INDEX,
    bundle,
    committed_files,
    deploy_space,
    preload_entry,
    requirements_for,
    space_readme,
)


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


@pytest.fixture
def plans(hub_server):
    """The test Hub's plans, to change for one test (testuser is free, testorg on Team); restored afterwards."""
    before = dict(hub_server.plans)
    yield hub_server.plans
    hub_server.plans.clear()
    hub_server.plans.update(before)


def front_matter(text: str) -> str:
    return text.split("---\n")[1]


def deploy_cli(checkout: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m space deploy ...` run from `checkout`, as a user runs it from their clone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "space", "deploy", *args], cwd=checkout, capture_output=True,
                          text=True, timeout=600, env=env)


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
    assert "preload_from_hub" not in front_matter(shipped["README.md"].decode())  # none for a private model


def test_preload_from_hub_names_the_models_files_at_the_deployed_commit(checkout):
    files, _, _ = committed_files(checkout)
    sha = "0123456789abcdef0123456789abcdef01234567"
    siblings = [".gitattributes", "README.md", "config.json", "metrics.json", "model.safetensors", "plots/roc.png",
                "examples/ring_1.png", "examples/a scan.png", "examples/cross,2.png"]
    entry = preload_entry("org/model", sha, siblings)
    # the docs' format: "repository file1,file2 commit"; a name with a space or a comma cannot be listed
    assert entry == f"org/model config.json,model.safetensors,examples/ring_1.png {sha}"
    readme = bundle(files, "org/model", "zero-a10g", entry)["README.md"].decode()
    assert f"models:\n  - org/model\npreload_from_hub:\n  - {entry}\n" in front_matter(readme)
    again = space_readme(readme, "org/other")  # a redeploy for a private model drops what cannot be preloaded
    assert "preload_from_hub" not in front_matter(again) and "models:\n  - org/other\n" in front_matter(again)
    assert space_readme(readme, "org/model", entry) == readme  # the block is replaced, never repeated


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
    assert {k: v.value for k, v in api.get_space_variables(space_id).items()} == {
        "MODEL_ID": repo_id, "MODEL_REVISION": "v1", "MAX_BATCH_SIZE": "1"}  # batching off: never measured faster
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
    assert result.left_out == ["hub/scratch.py", "space/app.py"] and result.hardware == "zero-a10g"
    assert remote_text(space_id, "space/app.py") == committed  # the commit, not the edit
    files = set(HfApi().list_repo_files(space_id, repo_type="space"))
    assert "hub/scratch.py" not in files and not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert result.secrets == [] and hub_server.space_secrets(space_id) == {}  # a public model needs no token
    assert remote_text(space_id, "requirements.txt") == (ROOT / "space" / "requirements.txt").read_text()
    sha = HfApi().model_info(repo_id, revision="v1").sha  # a public model: the Space's build preloads it
    readme = front_matter(remote_text(space_id, "README.md"))
    assert f"preload_from_hub:\n  - {repo_id} config.json,model.safetensors {sha}\n" in readme


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
    api.add_space_variable(space_id, "MAX_BATCH_SIZE", "8")  # its owner turned batching on
    second = deploy_space(space_id, repo_id, "v2", checkout=checkout)
    assert not second.created and second.hardware == "t4-small"  # an existing Space keeps its hardware
    assert "MAX_BATCH_SIZE" not in second.variables and second.notes == []
    assert api.get_space_variables(space_id)["MAX_BATCH_SIZE"].value == "8"  # and its owner's batching
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
    with pytest.raises(Exception, match="not a Space id"):
        deploy_space("no-slash", repo_id, "v1", checkout=checkout)
    monkeypatch.setattr(space.deploy, "CHECKOUT", checkout)
    other = f"{space_id}-b"
    assert main(["deploy", other, "--model", repo_id, "--revision", "v1", "--no-token-secret"]) == 0
    out = capsys.readouterr().out
    assert "is private and no token was stored (--no-token-secret): add a Space secret HF_TOKEN" in out
    assert hub_server.space_secrets(other) == {}


# ---- the account's plan: ZeroGPU by default, the Hub's 402 as one line ----------------------------------------------

def test_a_free_account_deploys_on_zerogpu_and_hears_of_the_two_space_limit(hub_server, hub_token, repo_id, checkout,
                                                                            tmp_path, plans):
    from huggingface_hub import HfApi

    model_repo(repo_id, tmp_path)
    assert HfApi().whoami()["isPro"] is False  # testuser is on the free plan
    space_id = f"testuser/space-{uuid.uuid4().hex[:8]}"
    refused = deploy_cli(checkout, space_id, "--model", repo_id, "--revision", "v1", "--hardware", "cpu-basic")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith(f"error: {space_id}: the Hub refused to create a Gradio Space on cpu-basic "
                                     "(HTTP 402 Payment Required: Static Spaces are free for everyone, but hosting "
                                     "Gradio and Docker Spaces on free cpu-basic requires a PRO subscription.")
    assert ("a Gradio Space needs a paid plan (PRO for a personal account, Team or Enterprise for an organization), "
            "except on ZeroGPU, where a free personal account may host 2; deploy with --hardware zero-a10g (the "
            "default for a new Space), or subscribe to PRO; nothing was created") in refused.stderr
    assert not HfApi().repo_exists(space_id, repo_type="space")
    done = deploy_cli(checkout, space_id, "--model", repo_id, "--revision", "v1")
    assert done.returncode == 0, done.stderr
    assert (f"serving {repo_id}@v1 on zero-a10g (Space variables MODEL_ID, MODEL_REVISION, MAX_BATCH_SIZE)"
            in done.stdout)
    assert ("note: ZeroGPU: a free account hosts at most 2 ZeroGPU Spaces (verified email, account older than 30 "
            "days; PRO hosts 10); each call is paid by the visitor's daily ZeroGPU quota: 2 minutes without an "
            "account, 5 with a free one, 40 with PRO") in done.stdout
    assert HfApi().get_space_runtime(space_id).requested_hardware == "zero-a10g"
    assert "the Space's build preloads" in done.stdout


def test_a_pro_account_picks_any_hardware_and_an_unpaid_organization_is_told_why_not(hub_server, hub_token, repo_id,
                                                                                    checkout, tmp_path, plans):
    from huggingface_hub import HfApi

    model_repo(repo_id, tmp_path)
    plans["testuser"] = "pro"
    cpu = deploy_space(f"testuser/space-{uuid.uuid4().hex[:8]}", repo_id, "v1", hardware="cpu-basic",
                       checkout=checkout)
    assert cpu.hardware == "cpu-basic" and cpu.notes == []
    assert HfApi().get_space_runtime(cpu.space_id).requested_hardware == "cpu-basic"
    zero = deploy_space(f"testuser/space-{uuid.uuid4().hex[:8]}", repo_id, "v1", checkout=checkout)
    assert zero.hardware == "zero-a10g" and zero.notes[0].startswith("ZeroGPU: a PRO account hosts up to 10")
    plans["testorg"] = None  # an organization without a Team or Enterprise plan hosts no Gradio Space
    space_id = f"testorg/space-{uuid.uuid4().hex[:8]}"
    with pytest.raises(Exception, match=r"the Hub refused to create a Gradio Space on zero-a10g \(HTTP 402 Payment "
                                        r"Required: .*\): a Gradio Space needs a paid plan .*; testorg needs a Team or "
                                        r"Enterprise plan, or deploy to your own namespace; nothing was created$"):
        deploy_space(space_id, repo_id, "v1", checkout=checkout)
    assert not HfApi().repo_exists(space_id, repo_type="space")


# ---- deploys at the same time: parent_commit and 412 -----------------------------------------------------------------

def test_a_deploy_whose_space_moved_meanwhile_recomputes_its_deletions(hub_server, hub_token, repo_id, space_id,
                                                                       checkout, tmp_path, monkeypatch):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    model_repo(repo_id, tmp_path)
    first = deploy_space(space_id, repo_id, "v1", checkout=checkout)
    api = HfApi()
    api.upload_file(path_or_fileobj=b"x = 1\n", path_in_repo="old_module.py", repo_id=space_id, repo_type="space")
    create_commit = HfApi.create_commit
    other = {}

    def another_commit_first(self, *args, **kwargs):  # between the deploy's read of the Space and its commit
        if not other:
            other["done"] = True
            api.create_commit(space_id, repo_type="space", commit_message="someone else", operations=[
                CommitOperationDelete("old_module.py"), CommitOperationAdd("stray.py", b"y = 2\n")])
        return create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", another_commit_first)
    seen = len(hub_server.requests)
    second = deploy_space(space_id, repo_id, "v1", checkout=checkout)
    stale = [r for r in hub_server.requests[seen:] if r.method == "POST" and "/commit/" in r.path and r.status == 412]
    assert len(stale) == 1  # its first commit named a head that had moved: refused, then made on the new head
    commits = hub_server.commits(space_id, "space")
    assert commits[0]["message"].startswith("Deploy app") and commits[1]["message"] == "someone else"
    assert commits[0]["id"] == second.commit and set(commits[0]["files"]) == set(first.files) | {".gitattributes"}


def test_a_deploy_that_keeps_losing_the_race_gives_up_in_one_line(hub_server, hub_token, repo_id, space_id, checkout,
                                                                  tmp_path, monkeypatch, capsys):
    import space.deploy
    from hub.publish import COMMIT_ATTEMPTS
    from space.__main__ import main

    model_repo(repo_id, tmp_path)
    deploy_space(space_id, repo_id, "v1", checkout=checkout)
    before = len(hub_server.commits(space_id, "space"))
    someone_always_commits_first(monkeypatch, space_id, "space")
    monkeypatch.setattr(space.deploy, "CHECKOUT", checkout)
    assert main(["deploy", space_id, "--model", repo_id, "--revision", "v1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {space_id}: other commits kept landing on main first "
                                                   f"({COMMIT_ATTEMPTS} tries")
    assert "nothing was committed. Run the same command again" in err
    assert [c["message"] for c in hub_server.commits(space_id, "space")[:COMMIT_ATTEMPTS]] == [
        "Upload other.bin with huggingface_hub"] * COMMIT_ATTEMPTS
    assert len(hub_server.commits(space_id, "space")) == before + COMMIT_ATTEMPTS
