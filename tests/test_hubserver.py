"""The local Hub server, exercised through the real `huggingface_hub` client and timm (no mocks).

Each test checks something the client or the server could get wrong: which files go through LFS, that a commit is
atomic, that revisions resolve to the right content, that errors map to the client's typed exceptions...
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from hubserver import HubServer, git_blob_sha1
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

VALID_README = "---\nlicense: mit\ntags:\n- image-classification\n- timm\nlibrary_name: timm\n---\n# A model\n"


# ---- helpers & fixtures --------------------------------------------------------------------------------------------


def write_files(folder: Path, files: dict[str, bytes | str]) -> Path:
    """Create `files` ({relative path: content}) under `folder`."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return folder


def png_bytes() -> bytes:
    """A small real PNG (its signature and IHDR length put NUL bytes in its first 16)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def requests_since(server: HubServer, start: int, method: str, path_part: str) -> list:
    """Requests recorded by the server after index `start` with this method and a path containing `path_part`."""
    return [r for r in server.requests[start:] if r.method == method and path_part in r.path]


@pytest.fixture
def api(hub_token: str) -> HfApi:
    """A client with no explicit token: it picks up HF_TOKEN, like user code does."""
    return HfApi()


@pytest.fixture
def read_token(hub_server: HubServer) -> str:
    """The server's read-only token."""
    return next(token for token, role in hub_server.tokens.items() if role == "read")


@pytest.fixture
def created_repo(api: HfApi, repo_id: str) -> str:
    """A freshly created (empty) model repo."""
    api.create_repo(repo_id)
    return repo_id


@pytest.fixture
def restart_after(hub_server: HubServer):
    """Leave the session server running and fault-free, whatever a fault-injection test did."""
    yield hub_server
    hub_server.clear_faults()
    hub_server.start()


# ---- auth & repos --------------------------------------------------------------------------------------------------


def test_whoami_roles_and_bad_token(hub_server: HubServer, hub_token: str, read_token: str, caplog) -> None:
    """whoami reports the token role; a bad token is a 401 whose message never contains the token."""
    caplog.set_level("DEBUG", logger="hubserver")
    assert HfApi().whoami()["name"] == "testuser"
    assert HfApi().whoami()["auth"]["accessToken"]["role"] == "write"
    assert HfApi(token=read_token).whoami()["auth"]["accessToken"]["role"] == "read"
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(token="hf_not_a_valid_token").whoami()
    assert error.value.response.status_code == 401
    assert "hf_not_a_valid_token" not in str(error.value)
    assert caplog.records, "the server logs requests at DEBUG"
    assert not any(token in caplog.text for token in (hub_token, read_token, "hf_not_a_valid_token"))


def test_create_repo_conflict_exist_ok_and_read_token(api: HfApi, repo_id: str, read_token: str, hub_server) -> None:
    """A second create is a 409 (exist_ok tolerates it); a read token cannot create; repos start with one commit."""
    url = api.create_repo(repo_id)
    assert (url.repo_id, url.repo_type) == (repo_id, "model")
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(repo_id)
    assert error.value.response.status_code == 409
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(token=read_token).create_repo(f"testorg/other-{uuid.uuid4().hex[:8]}")
    assert error.value.response.status_code == 403
    [initial] = hub_server.commits(repo_id)
    assert (initial["message"], list(initial["files"])) == ("initial commit", [".gitattributes"])


# ---- uploads -------------------------------------------------------------------------------------------------------


def test_upload_folder_is_one_commit_and_large_files_go_through_lfs(
    api: HfApi, created_repo: str, hub_server: HubServer, tmp_path: Path
) -> None:
    """*.safetensors (by .gitattributes), >10 MiB files and binary files (a small PNG, told by the preupload's
    sample) go through LFS: batch, unauthenticated PUT, verify."""
    weights, big = os.urandom(4096), b"0123456789abcdef" * (700 * 1024)  # ~11 MiB
    folder = write_files(tmp_path / "export", {
        "README.md": VALID_README, "config.json": '{"num_classes": 3}', "model.safetensors": weights,
        "logs/big.txt": big, "logs/small.txt": "hello", "plots/roc.png": png_bytes(),
    })
    start = len(hub_server.requests)
    info = api.upload_folder(repo_id=created_repo, folder_path=folder, commit_message="Add export")

    history = hub_server.commits(created_repo)
    assert [c["message"] for c in history] == ["Add export", "initial commit"]
    assert history[0]["id"] == info.oid
    assert history[0]["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert history[0]["files"]["config.json"] == git_blob_sha1(b'{"num_classes": 3}')

    files = {f.path: f for f in api.list_repo_tree(created_repo, recursive=True) if isinstance(f, RepoFile)}
    assert files["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert files["logs/big.txt"].lfs.size == len(big)
    assert files["plots/roc.png"].lfs.size == len(png_bytes())
    assert files["config.json"].lfs is None and files["logs/small.txt"].lfs is None
    top = api.list_repo_tree(created_repo)
    assert {f.path for f in top if isinstance(f, RepoFolder)} == {"logs", "plots"}

    puts = requests_since(hub_server, start, "PUT", "/lfs-upload/")
    assert len(puts) == 3 and all(not r.authorized and r.host.startswith("localhost:") for r in puts)
    assert len(requests_since(hub_server, start, "POST", "/info/lfs/objects/verify")) == 3
    assert len(requests_since(hub_server, start, "POST", "/commit/main")) == 1

    # Same content again: the preupload oids tell the client nothing changed, so no upload and no commit.
    start = len(hub_server.requests)
    assert api.upload_folder(repo_id=created_repo, folder_path=folder).oid == info.oid
    assert not requests_since(hub_server, start, "PUT", "/lfs-upload/")
    assert len(hub_server.commits(created_repo)) == 2


def test_tags_branches_and_pull_requests(api: HfApi, created_repo: str) -> None:
    """Tags and branches point at commits, create_pr opens refs/pr/1 without touching main; model_info follows
    (what `hub push --tag/--branch/--create-pr` and `hub pull ORG/NAME@REV` rely on)."""
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="weights.txt", repo_id=created_repo)
    api.create_tag(created_repo, tag="v1")
    api.create_branch(created_repo, branch="dev")
    dev = api.upload_file(path_or_fileobj=b"dev", path_in_repo="weights.txt", repo_id=created_repo, revision="dev")
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="weights.txt", repo_id=created_repo, create_pr=True)

    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    refs = api.list_repo_refs(created_repo)
    assert {b.name: b.target_commit for b in refs.branches} == {"main": v1.oid, "dev": dev.oid}
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": v1.oid}

    assert api.model_info(created_repo).sha == v1.oid  # the PR did not move main
    assert api.model_info(created_repo, revision="v1").sha == v1.oid
    assert api.model_info(created_repo, revision="dev").sha == dev.oid
    assert api.model_info(created_repo, revision="refs/pr/1").sha == pr.oid
    assert api.model_info(created_repo, revision=dev.oid[:10]).sha == dev.oid

    for create in (lambda **kw: api.create_tag(created_repo, tag="v1", **kw),
                   lambda **kw: api.create_branch(created_repo, branch="dev", **kw)):
        with pytest.raises(HfHubHTTPError) as error:
            create()
        assert error.value.response.status_code == 409
        create(exist_ok=True)


# ---- downloads -----------------------------------------------------------------------------------------------------


def test_downloads_at_tag_branch_and_commit(api: HfApi, created_repo: str, hub_server: HubServer, tmp_path) -> None:
    """hf_hub_download / snapshot_download pin the content of a tag, a branch and a commit, not of main."""
    old_weights, new_weights = os.urandom(3000), os.urandom(3000)
    v1 = api.upload_folder(repo_id=created_repo, folder_path=write_files(tmp_path / "v1", {
        "config.json": '{"v": 1}', "model.safetensors": old_weights}))
    api.create_tag(created_repo, tag="v1")
    api.create_branch(created_repo, branch="stable", revision="v1")
    api.upload_folder(repo_id=created_repo, folder_path=write_files(tmp_path / "v2", {
        "config.json": '{"v": 2}', "model.safetensors": new_weights}))

    start = len(hub_server.requests)
    for revision in ("v1", "stable", v1.oid):
        assert Path(hf_hub_download(created_repo, "config.json", revision=revision)).read_text() == '{"v": 1}'
        assert Path(hf_hub_download(created_repo, "model.safetensors", revision=revision)).read_bytes() == old_weights
        snapshot = Path(snapshot_download(created_repo, revision=revision))
        assert snapshot.name == v1.oid and json.loads((snapshot / "config.json").read_text()) == {"v": 1}
    assert Path(hf_hub_download(created_repo, "model.safetensors")).read_bytes() == new_weights

    # LFS files: metadata on the resolve response, content behind a cross-origin redirect fetched without auth.
    lfs = get_hf_file_metadata(hf_hub_url(created_repo, "model.safetensors", revision="v1"))
    assert (lfs.commit_hash, lfs.etag, lfs.size) == (v1.oid, hashlib.sha256(old_weights).hexdigest(), 3000)
    assert urlsplit(lfs.location).hostname == "localhost" != urlsplit(hub_server.url).hostname
    regular = get_hf_file_metadata(hf_hub_url(created_repo, "config.json", revision="v1"))
    assert (regular.etag, regular.size) == (git_blob_sha1(b'{"v": 1}'), 8)
    cdn = requests_since(hub_server, start, "GET", "/cdn-lfs/")
    assert cdn and not any(r.authorized for r in cdn)  # HF_TOKEN is set, the client must not forward it


def test_offline_mode_loads_from_cache(api: HfApi, created_repo: str, hub_server: HubServer) -> None:
    """With HF_HUB_OFFLINE=1 (read at import, hence a subprocess) cached files load and nothing hits the server."""
    api.upload_file(path_or_fileobj=b'{"offline": true}', path_in_repo="config.json", repo_id=created_repo)
    api.create_tag(created_repo, tag="v1")
    snapshot_download(created_repo, revision="v1")
    script = textwrap.dedent(f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
        print(open(hf_hub_download({created_repo!r}, "config.json", revision="v1")).read())
        print(snapshot_download({created_repo!r}, revision="v1"))
        try:
            hf_hub_download({created_repo!r}, "never-cached.bin", revision="v1")
        except LocalEntryNotFoundError:
            print("not cached: LocalEntryNotFoundError")
    """)
    start = len(hub_server.requests)
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert '{"offline": true}' in result.stdout
    assert "not cached: LocalEntryNotFoundError" in result.stdout
    assert hub_server.requests[start:] == []


# ---- errors --------------------------------------------------------------------------------------------------------


def test_errors_map_to_typed_exceptions(api: HfApi, created_repo: str, read_token: str, hub_server) -> None:
    """X-Error-Code drives the client's exception types; bad tokens are 401, read tokens writing are 403."""
    api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=created_repo)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("testorg/does-not-exist")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("testorg/does-not-exist", "config.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(created_repo, "config.json", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(created_repo, revision="no-such-tag")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(created_repo, "missing.txt")

    with pytest.raises(HfHubHTTPError) as error:
        HfApi(token="hf_bogus").model_info(created_repo)
    assert error.value.response.status_code == 401 and not isinstance(error.value, RepositoryNotFoundError)

    before = hub_server.commits(created_repo)
    for create_pr in (False, True):  # a read token reads only: no pull request either (security-tokens.md)
        with pytest.raises(HfHubHTTPError) as error:
            HfApi(token=read_token).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=created_repo,
                                                create_pr=create_pr)
        assert error.value.response.status_code == 403
    assert hub_server.commits(created_repo) == before and hub_server.commits(created_repo, ref="refs/pr/1") == []


def test_private_repo_is_hidden_from_anonymous_callers(api: HfApi, repo_id: str, read_token: str) -> None:
    """A private repo looks missing without a token and is readable with one."""
    api.create_repo(repo_id, private=True)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo_id, token=False)
    assert HfApi(token=read_token).model_info(repo_id).private is True


def test_a_binary_file_sent_inline_is_refused_and_changes_nothing(
    api: HfApi, created_repo: str, hub_server: HubServer, hub_token: str
) -> None:
    """A client that skips the preupload's answer and sends a PNG as a regular (base64) file is refused, like the
    Hub's "Your push was rejected because it contains binary files"; a text file the same way lands."""
    before = hub_server.commits(created_repo)
    url = f"{hub_server.url}/api/models/{created_repo}/commit/main"
    headers = {"Authorization": f"Bearer {hub_token}", "Content-Type": "application/x-ndjson"}

    def body(path: str, data: bytes) -> str:
        header = {"key": "header", "value": {"summary": f"add {path}"}}
        content = base64.b64encode(data).decode()
        file = {"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}
        return "\n".join(json.dumps(line) for line in (header, file))

    refused = httpx2.post(url, content=body("plots/roc.png", png_bytes()), headers=headers)
    assert refused.status_code == 400 and "binary files: plots/roc.png" in refused.json()["error"]
    assert hub_server.commits(created_repo) == before
    landed = httpx2.post(url, content=body("notes.txt", b"plain text"), headers=headers)
    assert landed.status_code == 200 and "notes.txt" in hub_server.commits(created_repo)[0]["files"]


def test_writes_outside_the_users_namespaces_are_refused(api: HfApi, hub_server: HubServer, read_token: str) -> None:
    """The token's user writes to its own and its organizations' namespaces only: creating, committing or tagging
    elsewhere is a 403 (create_repo's exist_ok then falls back to repo_info), a pull request on another
    namespace's public repo is allowed, and another namespace's private repo is not found even with a token."""
    from huggingface_hub import CommitOperationAdd

    public = "timm/resnet50.a1_in1k"  # seeded as timm's maintainers would
    with pytest.raises(HfHubHTTPError) as error:
        api.create_repo(f"someone-else/model-{uuid.uuid4().hex[:8]}")
    assert error.value.response.status_code == 403 and 'namespace "someone-else"' in str(error.value)
    assert api.create_repo(public, exist_ok=True).repo_id == public
    before = hub_server.commits(public)
    for write in (
        lambda: api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=public),
        lambda: api.create_tag(public, tag="mine"),
        lambda: api.create_branch(public, branch="mine"),
    ):
        with pytest.raises(HfHubHTTPError) as error:
            write()
        assert error.value.response.status_code == 403
    assert hub_server.commits(public) == before and not api.list_repo_refs(public).tags
    pr = api.create_commit(public, [CommitOperationAdd("x.txt", b"x")], commit_message="suggest", create_pr=True)
    assert pr.pr_url and hub_server.commits(public) == before

    hidden = f"someone-else/private-{uuid.uuid4().hex[:8]}"
    hub_server.namespaces.add("someone-else")   # its owner creates it
    try:
        api.create_repo(hidden, private=True)
    finally:
        hub_server.namespaces.discard("someone-else")
    for token in (None, read_token):
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=token).model_info(hidden)


def test_readme_metadata_is_validated_before_committing(api: HfApi, created_repo: str, hub_server) -> None:
    """POST /api/validate-yaml: invalid front matter aborts the commit, missing metadata is only a warning."""
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(path_or_fileobj=b"---\nlicense: [mit\n---\n", path_in_repo="README.md", repo_id=created_repo)
    assert len(hub_server.commits(created_repo)) == 1
    with pytest.warns(UserWarning, match="Empty or missing yaml metadata"):
        api.upload_file(path_or_fileobj=b"# no metadata\n", path_in_repo="README.md", repo_id=created_repo)
    api.upload_file(path_or_fileobj=VALID_README.encode(), path_in_repo="README.md", repo_id=created_repo)
    assert len(hub_server.commits(created_repo)) == 3


# ---- fault injection -----------------------------------------------------------------------------------------------


def test_failed_commit_leaves_repo_unchanged_and_retry_succeeds(api: HfApi, created_repo: str, restart_after) -> None:
    """A 500 on the commit endpoint (not retried by the client) publishes nothing; the retry does."""
    server = restart_after
    before = server.commits(created_repo)
    server.fail_next("POST", r"/commit/main$", status=500)
    with pytest.raises(HfHubHTTPError) as error:
        api.upload_file(path_or_fileobj=b"1", path_in_repo="x.txt", repo_id=created_repo)
    assert error.value.response.status_code == 500
    assert server.commits(created_repo) == before
    api.upload_file(path_or_fileobj=b"1", path_in_repo="x.txt", repo_id=created_repo)
    assert server.commits(created_repo)[1:] == before


def test_server_killed_on_commit_then_restarted(api: HfApi, created_repo: str, restart_after, tmp_path) -> None:
    """The server dies on the commit request: the repo stays at its previous commit; after a restart (same port,
    same storage) the retry commits, without re-uploading the LFS object that had arrived before the crash."""
    server = restart_after
    folder = write_files(tmp_path / "export", {"config.json": "{}", "model.safetensors": os.urandom(2048)})
    before = server.commits(created_repo)
    stopped = server.kill_on("POST", r"/commit/")
    with pytest.raises(httpx2.TransportError):
        api.upload_folder(repo_id=created_repo, folder_path=folder)
    assert stopped.wait(5) and not server.running
    assert server.commits(created_repo) == before

    server.start()
    start = len(server.requests)
    info = api.upload_folder(repo_id=created_repo, folder_path=folder)
    assert server.commits(created_repo)[0]["id"] == info.oid
    assert server.commits(created_repo)[1:] == before
    assert not requests_since(server, start, "PUT", "/lfs-upload/")


# ---- spaces --------------------------------------------------------------------------------------------------------


def test_space_repo_upload_and_variables(api: HfApi, hub_server: HubServer) -> None:
    """Spaces: sdk at creation, files under /spaces/..., variables API (add and get, as deploy uses them)."""
    space_id = f"testorg/space-{uuid.uuid4().hex[:8]}"
    url = api.create_repo(space_id, repo_type="space", space_sdk="gradio")
    assert url.repo_type == "space" and "/spaces/" in url
    api.upload_file(path_or_fileobj=b"import gradio\n", path_in_repo="app.py", repo_id=space_id, repo_type="space")
    info = api.space_info(space_id)
    assert info.sdk == "gradio" and "app.py" in {s.rfilename for s in info.siblings}
    assert Path(hf_hub_download(space_id, "app.py", repo_type="space")).read_bytes() == b"import gradio\n"
    assert len(hub_server.commits(space_id, repo_type="space")) == 2

    api.add_space_variable(space_id, "MODEL_REPO", "testorg/model", description="weights")
    variables = api.get_space_variables(space_id)
    assert (variables["MODEL_REPO"].value, variables["MODEL_REPO"].description) == ("testorg/model", "weights")
    api.add_space_variable(space_id, "MODEL_REPO", "testorg/other")  # a redeploy replaces the value
    assert {k: v.value for k, v in api.get_space_variables(space_id).items()} == {"MODEL_REPO": "testorg/other"}


@pytest.fixture
def space_id() -> str:
    """A fresh Space id per test (not created)."""
    return f"testorg/space-{uuid.uuid4().hex[:8]}"


def test_space_created_with_hardware_variables_and_secrets_in_one_call(
    api: HfApi, space_id: str, hub_server: HubServer, hub_token: str
) -> None:
    """create_repo sends sdk, hardware, variables and secrets together; secrets are stored but no GET returns them,
    and a second create_repo(exist_ok=True) answers 409 and applies nothing, as on the Hub."""
    secret = f"hf_secret_{uuid.uuid4().hex}"
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", space_hardware="t4-small", private=True,
                    space_variables=[{"key": "MODEL_ID", "value": "testorg/model", "description": "weights"}],
                    space_secrets=[{"key": "HF_TOKEN", "value": secret}], exist_ok=True)
    variables = api.get_space_variables(space_id)
    assert {k: (v.value, v.description) for k, v in variables.items()} == {"MODEL_ID": ("testorg/model", "weights")}
    assert hub_server.space_secrets(space_id) == {"HF_TOKEN": secret}

    runtime = api.get_space_runtime(space_id)  # nothing to run yet: the initial commit has no app.py
    assert (runtime.stage, runtime.hardware, runtime.requested_hardware) == ("NO_APP_FILE", None, "t4-small")
    info = api.space_info(space_id)
    assert info.private is True and info.runtime.requested_hardware == "t4-small"
    with pytest.raises(RepositoryNotFoundError):
        api.get_space_runtime(space_id, token=False)

    for path in ("", "/runtime", "/variables"):  # every GET the Space answers: the secret is in none of them
        response = httpx2.get(f"{hub_server.url}/api/spaces/{space_id}{path}",
                              headers={"Authorization": f"Bearer {hub_token}"})
        assert response.status_code == 200 and secret not in response.text and "HF_TOKEN" not in response.text

    api.create_repo(space_id, repo_type="space", space_sdk="gradio", space_hardware="a10g-small",
                    space_variables=[{"key": "MODEL_ID", "value": "other"}], exist_ok=True)
    assert api.get_space_variables(space_id)["MODEL_ID"].value == "testorg/model"
    assert api.get_space_runtime(space_id).requested_hardware == "t4-small"


def test_space_with_unknown_hardware_is_refused(api: HfApi, space_id: str, hub_server: HubServer) -> None:
    """A hardware name outside huggingface_hub's SpaceHardware list is a 400 with a message; nothing is created."""
    with pytest.raises(HfHubHTTPError, match="Invalid hardware flavor 'gpu-huge'") as error:
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", space_hardware="gpu-huge", exist_ok=True)
    assert error.value.response.status_code == 400
    assert hub_server.commits(space_id, "space") == [] and not api.repo_exists(space_id, repo_type="space")
    with pytest.raises(HfHubHTTPError, match="Invalid variable key") as error:
        api.create_repo(space_id, repo_type="space", space_sdk="gradio", space_variables=[{"key": "1X", "value": ""}])
    assert error.value.response.status_code == 400 and hub_server.commits(space_id, "space") == []


def test_space_secret_and_hardware_requests(api: HfApi, space_id: str, hub_server: HubServer, read_token: str) -> None:
    """add_space_secret stores (or replaces) a value only the Space sees; request_space_hardware answers the new
    runtime; unknown hardware is a 400 and a read token a 403."""
    api.create_repo(space_id, repo_type="space", space_sdk="gradio")
    assert api.get_space_runtime(space_id).requested_hardware == "cpu-basic"  # the Hub's default
    api.add_space_secret(space_id, "HF_TOKEN", "hf_first", description="pushes results")
    api.add_space_secret(space_id, "HF_TOKEN", "hf_second")
    assert hub_server.space_secrets(space_id) == {"HF_TOKEN": "hf_second"}
    assert api.get_space_variables(space_id) == {}  # secrets are not variables

    runtime = api.request_space_hardware(space_id, "zero-a10g", sleep_time=3600)
    assert (runtime.requested_hardware, runtime.sleep_time) == ("zero-a10g", 3600)
    assert api.space_info(space_id).runtime.requested_hardware == "zero-a10g"
    with pytest.raises(HfHubHTTPError, match="Invalid hardware flavor") as error:
        api.request_space_hardware(space_id, "gpu-huge")
    assert error.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as error:
        HfApi(token=read_token).request_space_hardware(space_id, "cpu-upgrade")
    assert error.value.response.status_code == 403
    assert api.get_space_runtime(space_id).requested_hardware == "zero-a10g"


def test_space_commit_then_snapshot_into_an_empty_folder(api: HfApi, space_id: str, tmp_path: Path) -> None:
    """A commit to a Space (LFS included) comes back whole with snapshot_download(repo_type="space", local_dir=...),
    and with app.py on main the Space runs on its requested hardware."""
    weights = os.urandom(2048)
    api.create_repo(space_id, repo_type="space", space_sdk="gradio", space_hardware="cpu-upgrade")
    folder = write_files(tmp_path / "app", {
        "app.py": "import hub\n", "hub/__init__.py": "", "requirements.txt": "gradio\n",
        "weights/tiny.safetensors": weights,
    })
    info = api.upload_folder(repo_id=space_id, repo_type="space", folder_path=folder, commit_message="Deploy")
    target = tmp_path / "checkout"
    assert Path(snapshot_download(space_id, repo_type="space", local_dir=target)) == target
    files = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() and ".cache" not in p.parts}
    assert files == {".gitattributes", "README.md", "app.py", "hub/__init__.py", "requirements.txt",
                     "weights/tiny.safetensors"}
    assert (target / "weights" / "tiny.safetensors").read_bytes() == weights
    assert "sdk: gradio" in (target / "README.md").read_text()
    assert api.space_info(space_id).sha == info.oid
    runtime = api.get_space_runtime(space_id)
    assert (runtime.stage, runtime.hardware, runtime.requested_hardware) == ("RUNNING", "cpu-upgrade", "cpu-upgrade")



@pytest.fixture
def user_plan(hub_server: HubServer):
    """Set the test user's plan ("free" or "pro") for one test; the session's server gets its plan back."""
    before = dict(hub_server.plans)
    yield lambda plan: hub_server.plans.update({"testuser": plan})
    hub_server.plans.clear()
    hub_server.plans.update(before)


def test_whoami_says_whether_the_user_is_pro(api: HfApi, user_plan) -> None:
    """whoami-v2 carries the plan as the Hub does: `isPro` for the user, a Team organization among its `orgs`."""
    me = api.whoami()
    assert (me["type"], me["name"], me["isPro"], me["canPay"], me["periodEnd"]) == ("user", "testuser", False,
                                                                                     False, None)
    [org] = me["orgs"]
    assert (org["type"], org["name"], org["canPay"]) == ("org", "testorg", True) and "plan" not in org
    user_plan("pro")
    me = api.whoami()
    assert me["isPro"] is True and me["canPay"] is True and isinstance(me["periodEnd"], int)


def test_a_free_account_creates_gradio_spaces_on_zerogpu_only(api: HfApi, hub_server: HubServer, user_plan) -> None:
    """As on the Hub since 2026-07: a free account's Gradio Space on cpu-basic (the default) is a 402 Payment
    Required with the Hub's message, and nothing is created; ZeroGPU and static Spaces are allowed; PRO may pick."""
    names = [f"testuser/space-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for hardware in (None, "cpu-basic", "t4-small"):
        with pytest.raises(HfHubHTTPError) as error:
            api.create_repo(names[0], repo_type="space", space_sdk="gradio", space_hardware=hardware)
        assert error.value.response.status_code == 402
        assert "hosting Gradio and Docker Spaces on free cpu-basic requires a PRO subscription" in str(error.value)
        assert not api.repo_exists(names[0], repo_type="space")
    api.create_repo(names[1], repo_type="space", space_sdk="gradio", space_hardware="zero-a10g")
    assert api.get_space_runtime(names[1]).requested_hardware == "zero-a10g"
    api.create_repo(names[2], repo_type="space", space_sdk="static")  # static Spaces are free for everyone
    api.create_repo(f"testorg/space-{uuid.uuid4().hex[:8]}", repo_type="space", space_sdk="gradio")  # a Team org
    hub_server.plans["testorg"] = None  # an organization without a paid plan hosts no Gradio Space at all
    try:
        with pytest.raises(HfHubHTTPError, match="requires a Team or Enterprise plan") as error:
            api.create_repo(f"testorg/space-{uuid.uuid4().hex[:8]}", repo_type="space", space_sdk="gradio",
                            space_hardware="zero-a10g")
        assert error.value.response.status_code == 402
    finally:
        hub_server.plans["testorg"] = "team"
    user_plan("pro")
    api.create_repo(names[3], repo_type="space", space_sdk="gradio")
    assert api.get_space_runtime(names[3]).requested_hardware == "cpu-basic"


def test_a_commit_on_a_stale_parent_is_a_412_and_changes_nothing(api: HfApi, created_repo: str, hub_server) -> None:
    """`parent_commit` (the header's `parentCommit`): the commit lands only if the branch still points there,
    full or 7-character; otherwise 412 Precondition Failed with the Hub's message, and the branch stays."""
    from huggingface_hub import CommitOperationAdd

    parent = api.model_info(created_repo).sha
    moved = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=created_repo).oid
    before = hub_server.commits(created_repo)
    with pytest.raises(HfHubHTTPError) as error:
        api.create_commit(created_repo, [CommitOperationAdd("b.txt", b"2")], commit_message="b", parent_commit=parent)
    assert error.value.response.status_code == 412
    assert "The branch was updated since you opened this page. Please refresh and try again." in str(error.value)
    assert hub_server.commits(created_repo) == before
    info = api.create_commit(created_repo, [CommitOperationAdd("b.txt", b"2")], commit_message="b",
                             parent_commit=moved[:7])
    assert [c["id"] for c in hub_server.commits(created_repo)[:2]] == [info.oid, moved]
    pr = api.create_commit(created_repo, [CommitOperationAdd("c.txt", b"3")], commit_message="c", create_pr=True,
                           parent_commit=parent)  # a pull request starts from the parent given, however old
    assert set(api.list_repo_files(created_repo, revision=pr.oid)) == {".gitattributes", "c.txt"}


# ---- timm ----------------------------------------------------------------------------------------------------------


def test_timm_loads_hf_hub_model_at_tag(api: HfApi, created_repo: str, tmp_path: Path) -> None:
    """A timm export (save_for_hf, safetensors) loads with `hf-hub:<repo>@v1`, even after main moved on."""
    import timm
    import torch

    labels = ["cat", "dog", "bird"]
    model = timm.create_model("resnet18", num_classes=3)
    timm.models.save_for_hf(model, tmp_path / "export", model_config={"label_names": labels}, safe_serialization=True)
    api.upload_folder(repo_id=created_repo, folder_path=tmp_path / "export")
    api.create_tag(created_repo, tag="v1")
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    api.upload_file(path_or_fileobj=json.dumps({**config, "label_names": ["x", "y", "z"]}).encode(),
                    path_in_repo="config.json", repo_id=created_repo)

    loaded = timm.create_model(f"hf-hub:{created_repo}@v1", pretrained=True)
    assert loaded.num_classes == 3
    assert list(loaded.pretrained_cfg["label_names"]) == labels
    assert torch.equal(loaded.state_dict()["fc.weight"], model.state_dict()["fc.weight"])


def test_timm_pretrained_resnet50_comes_from_the_seeded_repo(hub_server: HubServer) -> None:
    """timm's built-in `resnet50.a1_in1k` weights resolve to timm/resnet50.a1_in1k on this server."""
    import safetensors.torch
    import timm
    import torch

    start = len(hub_server.requests)
    model = timm.create_model("resnet50.a1_in1k", pretrained=True)
    assert requests_since(hub_server, start, "HEAD", "/timm/resnet50.a1_in1k/resolve/main/model.safetensors")
    seeded = safetensors.torch.load_file(hf_hub_download("timm/resnet50.a1_in1k", "model.safetensors"))
    assert torch.equal(model.state_dict()["fc.weight"], seeded["fc.weight"])
    config = json.loads(Path(hf_hub_download("timm/resnet50.a1_in1k", "config.json")).read_text())
    assert config["architecture"] == "resnet50" and config["num_classes"] == 1000
    assert config["pretrained_cfg"]["tag"] == "a1_in1k"
