"""Publishing to the Hub and loading back, against the local Hub-compatible server (real client)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import timm
import torch
from hub_races import someone_always_commits_first
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from PIL import Image

from hub import from_pretrained
from hub.model import ModelLoadError, model_files
from hub.publish import PublishError, next_tag, push


def _image(tiny_data: Path) -> Image.Image:
    return Image.open(next((tiny_data / "ring").glob("*.png"))).convert("RGB")


def _logits(source, image, revision=None):
    return from_pretrained(source, revision=revision, device="cpu").logits(image)


def test_next_tag_and_allow_list(tiny_models, tmp_path):
    assert next_tag([]) == "v1" and next_tag(["v1", "v3", "latest", "v10x"]) == "v4"
    folder = tmp_path / "m"
    shutil.copytree(tiny_models[0], folder, ignore=shutil.ignore_patterns("checkpoints"))
    (folder / "examples").mkdir()
    (folder / "examples" / "a.png").write_bytes(b"png")
    (folder / "extra.pt").write_bytes(b"pickle")
    (folder / "plots" / "notes.bin").write_bytes(b"x")
    files = model_files(folder)
    assert "model.safetensors" in files and "plots/roc.png" in files and "examples/a.png" in files
    assert not [f for f in files if f.startswith("checkpoints") or f.endswith((".pt", ".bin"))]


def test_push_v1_retrain_push_v2_all_revisions_load(hub_server, hub_token, repo_id, tiny_models, tiny_data):
    v1, v2 = tiny_models
    image = _image(tiny_data)
    r1 = push(v1, repo_id, tag="auto")
    assert r1.tag == "v1" and len(r1.commit) == 40 and r1.commit in r1.commit_url
    (v2 / "plots" / "extra.png").write_bytes((v2 / "plots" / "roc.png").read_bytes())
    r2 = push(v2, repo_id, tag="auto")
    assert r2.tag == "v2"
    commits = hub_server.commits(repo_id)
    assert len(commits) == 2 + 1 or len(commits) == 2  # one commit per push (+ the repo's initial commit)
    assert commits[0]["id"] == r2.commit and commits[1]["id"] == r1.commit
    # each revision loads and equals the folder it was pushed from
    assert torch.equal(_logits(repo_id, image, "v1"), _logits(v1, image))
    assert torch.equal(_logits(repo_id, image, "v2"), _logits(v2, image))
    assert torch.equal(_logits(repo_id, image), _logits(v2, image))  # main is the latest push
    assert torch.equal(_logits(f"{repo_id}@v1", image), _logits(v1, image))
    clf = from_pretrained(repo_id, revision="v1")
    assert clf.commit == r1.commit and clf.labels == ["checker", "cross", "ring"]
    # timm alone loads what we push, labels and preprocessing included
    model = timm.create_model(f"hf-hub:{repo_id}@v2", pretrained=True).eval()
    assert model.pretrained_cfg["label_names"] == ["checker", "cross", "ring"]
    assert timm.data.resolve_model_data_config(model)["input_size"] == (3, 64, 64)
    # the card of each revision parses and carries that revision's own metrics, plus the history
    for tag, folder in (("v1", v1), ("v2", v2)):
        card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision=tag))
        acc = json.loads((folder / "metrics.json").read_text())["validation"]["accuracy"]
        values = {r.metric_type: r.metric_value for r in card.data.eval_results}
        assert values["accuracy"] == pytest.approx(acc, abs=1e-6)
        assert f'revision="{tag}"' in card.text and f"hf-hub:{repo_id}@{tag}" in card.text
    card2 = ModelCard.load(hf_hub_download(repo_id, "README.md", revision="v2"))
    assert "Earlier revisions" in card2.text and "`v1`" in card2.text
    files_v2 = set(HfApi().list_repo_files(repo_id, revision="v2"))
    assert "plots/extra.png" in files_v2 and not any("checkpoint" in f for f in files_v2)
    # a file gone from the folder is deleted from the repo in the next push's single commit
    (v2 / "plots" / "extra.png").unlink()
    r3 = push(v2, repo_id)
    assert "plots/extra.png" not in HfApi().list_repo_files(repo_id, revision=r3.commit)
    assert "plots/extra.png" in HfApi().list_repo_files(repo_id, revision="v2")  # tags never move


def test_cli_push_prints_url_and_pinned_snippet_then_pull(hub_server, hub_token, repo_id, tiny_models, tmp_path):
    env = {**os.environ, "HF_TOKEN": hub_token}
    done = subprocess.run([sys.executable, "-m", "hub", "push", str(tiny_models[0]), repo_id, "--tag", "v7"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"/{repo_id}/commit/" in done.stdout and f'from_pretrained("{repo_id}", revision="v7")' in done.stdout
    assert hub_token not in done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "hub", "pull", f"{repo_id}@v7", str(tmp_path / "pulled")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    pulled = tmp_path / "pulled"
    assert (pulled / "model.safetensors").read_bytes() == (tiny_models[0] / "model.safetensors").read_bytes()
    assert not (pulled / "checkpoints").exists()


@pytest.mark.parametrize("token,message", [
    ("", "no Hugging Face token"),
    ("hf_not_a_real_token", "rejected the token (HTTP 401)"),
    ("hf_read_token_test", "no write access to this repository (HTTP 403)"),
])
def test_token_errors(hub_server, repo_id, tiny_models, monkeypatch, token, message):
    monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(PublishError, match=re.escape(message)) as info:
        push(tiny_models[0], repo_id, tag="auto")
    assert not token or token not in str(info.value)


def test_a_push_to_another_namespace_is_one_line_and_creates_nothing(hub_server, hub_token, tiny_models):
    """The Hub answers 403 to a create or a commit in a namespace the user is not a member of."""
    repo = "someone-else/model"
    with pytest.raises(PublishError, match=re.escape(f"{repo}: your token has no write access to this repository "
                                                     "(HTTP 403)")) as info:
        push(tiny_models[0], repo, tag="auto")
    assert "\n" not in str(info.value) and hub_token not in str(info.value)
    assert hub_server.commits(repo) == []


def test_server_failure_mid_push_leaves_repo_unchanged_and_retry_works(hub_server, hub_token, repo_id, tiny_models):
    v1, v2 = tiny_models
    push(v1, repo_id, tag="v1")
    before = hub_server.commits(repo_id)
    hub_server.fail_next("POST", r"/commit/", status=500)
    with pytest.raises(PublishError, match="HTTP 500"):
        push(v2, repo_id, tag="auto")
    assert hub_server.commits(repo_id) == before
    stopped = hub_server.kill_on("POST", r"/commit/")
    try:
        with pytest.raises(PublishError, match="cannot reach the Hub|HTTP 5"):
            push(v2, repo_id, tag="auto")
        assert stopped.wait(10)
    finally:
        hub_server.clear_faults()
        hub_server.start()
    assert hub_server.commits(repo_id) == before
    assert [t.name for t in HfApi().list_repo_refs(repo_id).tags] == ["v1"]
    result = push(v2, repo_id, tag="auto")
    assert result.tag == "v2" and hub_server.commits(repo_id)[0]["id"] == result.commit
    assert (v2 / "model.safetensors").is_file()  # nothing local was lost


def test_a_pull_request_is_never_tagged_and_a_failed_tag_says_the_commit_landed(hub_server, hub_token, repo_id,
                                                                                 tiny_models):
    v1, v2 = tiny_models
    push(v1, repo_id, tag="v1")
    before, seen = hub_server.commits(repo_id), len(hub_server.requests)
    with pytest.raises(PublishError, match="--tag cannot be combined with --create-pr"):
        push(v2, repo_id, tag="auto", create_pr=True)  # its card would name a v2 that nothing creates
    assert len(hub_server.requests) == seen  # refused before anything was sent
    pr = push(v2, repo_id, create_pr=True)
    assert pr.tag is None and "/discussions/" in pr.pr_url
    card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision=pr.commit)).text
    assert f"{repo_id}@main" in card and "@v2" not in card  # no tag that nothing creates
    assert hub_server.commits(repo_id) == before  # main untouched
    hub_server.fail_next("POST", r"/tag/", status=500)
    with pytest.raises(PublishError) as info:
        push(v2, repo_id, tag="auto")
    text = str(info.value)
    landed = hub_server.commits(repo_id)[0]["id"]
    assert landed != before[0]["id"] and f"/commit/{landed} was committed but tagging it v2 failed" in text
    assert "nothing was committed" not in text and f"revision='{landed}'" in text and "\n" not in text
    assert [t.name for t in HfApi().list_repo_refs(repo_id).tags] == ["v1"]


def test_a_pickle_only_repo_is_refused_without_downloading_the_pickle(hub_server, hub_token, repo_id, tiny_models):
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=str(tiny_models[0] / "config.json"), path_in_repo="config.json", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"\x80\x04 a pickle" * 1000, path_in_repo="pytorch_model.bin", repo_id=repo_id)
    seen = len(hub_server.requests)
    with pytest.raises(ModelLoadError, match=f"{repo_id}@main: no model.safetensors. It only has pytorch_model.bin: "
                                             "pickled weights are never loaded"):
        from_pretrained(repo_id)
    fetched = [r.path for r in hub_server.requests[seen:]]
    assert not [p for p in fetched if "pytorch_model.bin" in p], fetched
    assert not list(Path(os.environ["HF_HOME"]).rglob("pytorch_model.bin"))


def test_load_errors_are_plain(hub_server, hub_token, repo_id, tiny_models, tmp_path):
    with pytest.raises(ModelLoadError, match="repository not found"):
        from_pretrained("testorg/does-not-exist")
    push(tiny_models[0], repo_id, tag="v1")
    with pytest.raises(ModelLoadError, match="revision 'v99' not found"):
        from_pretrained(repo_id, revision="v99")
    api = HfApi()
    # a repo with only a pickle is refused without unpickling
    pickle_repo = repo_id + "-pickle"
    api.create_repo(pickle_repo)
    api.upload_file(path_or_fileobj=(tiny_models[0] / "config.json").read_bytes(), path_in_repo="config.json",
                    repo_id=pickle_repo)
    api.upload_file(path_or_fileobj=b"not really a pickle", path_in_repo="pytorch_model.bin", repo_id=pickle_repo)
    with pytest.raises(ModelLoadError, match="pickled weights are never loaded"):
        from_pretrained(pickle_repo)
    # config.json whose num_classes does not match the weights
    bad = tmp_path / "bad"
    shutil.copytree(tiny_models[0], bad, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_classes"] = 7
    (bad / "config.json").write_text(json.dumps(cfg))
    mismatched = repo_id + "-mismatch"
    api.create_repo(mismatched)
    api.upload_folder(folder_path=str(bad), repo_id=mismatched, allow_patterns=["config.json", "model.safetensors"])
    with pytest.raises(ModelLoadError, match="num_classes=7 but the weights have 3"):
        from_pretrained(mismatched)
    with pytest.raises(PublishError, match="num_classes=7"):
        push(bad, repo_id)


def test_offline_load_from_cache(hub_server, hub_token, repo_id, tiny_models, tiny_data):
    push(tiny_models[0], repo_id, tag="v1")
    expected = _logits(repo_id, _image(tiny_data), "v1")  # downloads into the cache
    code = ("import sys, torch; from PIL import Image; from hub import from_pretrained; "
            f"clf = from_pretrained({repo_id!r}, revision='v1', device='cpu'); "
            f"torch.save(clf.logits(Image.open(sys.argv[1]).convert('RGB')), sys.argv[2])")
    img_path = next((tiny_data / "ring").glob("*.png"))
    out = Path(os.environ["HF_HOME"]) / "offline-logits.pt"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    done = subprocess.run([sys.executable, "-c", code, str(img_path), str(out)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr
    assert torch.equal(torch.load(out, weights_only=True), expected)
    # a revision never downloaded cannot come from the cache: the message says so
    done = subprocess.run([sys.executable, "-c", code.replace("'v1'", "'v2'"), str(img_path), str(out)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert done.returncode != 0 and "not in the local cache" in done.stderr


def test_train_with_push_to_and_pretrained_from_hub(hub_server, hub_token, repo_id, tiny_data, tmp_path):
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "train", "--data", str(tiny_data), "--out", str(out), "--pretrained",
           "--epochs", "1", "--img-size", "32", "--batch-size", "8", "--push-to", repo_id, "--tag", "auto"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_TOKEN": hub_token})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tagged v1" in done.stdout and hub_token not in done.stdout + done.stderr
    card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision="v1"))
    assert card.data.base_model == "timm/resnet50.a1_in1k"  # initialised from the (test) Hub's ImageNet weights
    assert torch.equal(from_pretrained(repo_id, revision="v1").model.fc.weight, from_pretrained(out).model.fc.weight)


# ---- pushes at the same time: parent_commit, 412 and taken tags ---------------------------------------------------

def folder_copy(source: Path, dest: Path, extra: str | None = None, drop: str | None = None) -> Path:
    """A publishable copy of a model folder, with one file more (`extra`, a copy of the ROC plot) or one less."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoints"))
    if extra:
        (dest / extra).write_bytes((dest / "plots" / "roc.png").read_bytes() + extra.encode())
    if drop:
        (dest / drop).unlink()
    return dest


def assert_holds_exactly(hub_server, repo_id: str, tag: str, folder: Path) -> None:
    """The commit `tag` points to has exactly the folder's publishable files (plus its card and .gitattributes),
    each with the folder's content (git blob sha1 for regular files, sha256 for LFS ones)."""
    from hubserver import git_blob_sha1

    files = hub_server.commits(repo_id, ref=tag)[0]["files"]
    assert set(files) == set(model_files(folder)) | {"README.md", ".gitattributes"}, tag
    for rel in set(model_files(folder)) - {"README.md"}:  # the card is rendered anew for its tag
        data = (folder / rel).read_bytes()
        assert files[rel] in (git_blob_sha1(data), hashlib.sha256(data).hexdigest()), (tag, rel)
    card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision=tag)).text
    assert f'revision="{tag}"' in card


def stale_commits(hub_server, seen: int) -> int:
    return sum(r.method == "POST" and "/commit/" in r.path and r.status == 412 for r in hub_server.requests[seen:])


def test_two_auto_tag_pushes_at_once_end_as_consecutive_tags_with_every_file(hub_server, hub_token, repo_id,
                                                                            tiny_models, tmp_path, monkeypatch):
    v1, v2 = tiny_models
    push(v1, repo_id, tag="auto")
    a = folder_copy(v1, tmp_path / "a", extra="plots/only_in_a.png")
    b = folder_copy(v2, tmp_path / "b", drop="plots/roc.png")
    both_read = threading.Barrier(2)
    first = threading.local()
    create_commit = HfApi.create_commit

    def commit_once_both_have_read(self, *args, **kwargs):  # each push read the same head before either commits
        if not getattr(first, "done", False):
            first.done = True
            both_read.wait(60)
        return create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", commit_once_both_have_read)
    seen = len(hub_server.requests)
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip("ab", pool.map(lambda folder: push(folder, repo_id, tag="auto"), (a, b))))
    assert sorted(r.tag for r in results.values()) == ["v2", "v3"]
    assert stale_commits(hub_server, seen) >= 1  # one push's first commit was refused as stale, then it tried again
    for name, folder in (("a", a), ("b", b)):
        assert_holds_exactly(hub_server, repo_id, results[name].tag, folder)
    assert [t.name for t in HfApi().list_repo_refs(repo_id).tags] == ["v1", "v2", "v3"]
    assert hub_server.commits(repo_id)[0]["id"] == next(r.commit for r in results.values() if r.tag == "v3")
    card = ModelCard.load(hf_hub_download(repo_id, "README.md", revision="v3")).text
    assert "`v1`" in card and "`v2`" in card  # the history of the later push knows the earlier one


def test_a_push_commits_again_when_its_tag_was_taken_between_its_commit_and_its_tag(hub_server, hub_token, repo_id,
                                                                                    tiny_models, tmp_path,
                                                                                    monkeypatch):
    v1, v2 = tiny_models
    push(v1, repo_id, tag="auto")
    a = folder_copy(v1, tmp_path / "a", extra="plots/only_in_a.png")
    b = folder_copy(v2, tmp_path / "b")
    create_tag = HfApi.create_tag
    other = {}

    def another_push_first(self, *args, **kwargs):  # b pushes completely between a's commit and a's tag
        if not other:
            other["b"] = True
            other["b"] = push(b, repo_id, tag="auto")
        return create_tag(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_tag", another_push_first)
    result = push(a, repo_id, tag="auto")
    assert (other["b"].tag, result.tag) == ("v2", "v3")
    history = hub_server.commits(repo_id)
    assert [c["message"] for c in history[:3]] == ["Publish v3", "Publish v2", "Publish v2"]
    assert history[0]["id"] == result.commit and history[1]["id"] == other["b"].commit
    assert history[2]["files"] == history[0]["files"] | {"README.md": history[2]["files"]["README.md"]}  # a, untagged
    assert_holds_exactly(hub_server, repo_id, "v2", b)
    assert_holds_exactly(hub_server, repo_id, "v3", a)


def test_a_push_that_keeps_losing_the_race_gives_up_in_one_line(hub_server, hub_token, repo_id, tiny_models,
                                                                monkeypatch):
    from hub.publish import COMMIT_ATTEMPTS

    v1, v2 = tiny_models
    push(v1, repo_id, tag="auto")
    someone_always_commits_first(monkeypatch, repo_id)
    seen = len(hub_server.requests)
    with pytest.raises(PublishError) as info:
        push(v2, repo_id, tag="auto")
    text = str(info.value)
    assert "\n" not in text and f"other commits kept landing on main first ({COMMIT_ATTEMPTS} tries" in text
    assert "nothing was committed. Run the same command again" in text
    assert stale_commits(hub_server, seen) == COMMIT_ATTEMPTS
    assert not [c for c in hub_server.commits(repo_id) if c["message"] == "Publish v2"]
    assert [t.name for t in HfApi().list_repo_refs(repo_id).tags] == ["v1"]


def test_a_push_with_nothing_new_still_removes_files_another_commit_added_meanwhile(hub_server, hub_token, repo_id,
                                                                                   tiny_models, monkeypatch):
    """Pushing the same folder again changes nothing, and create_commit then skips the commit without checking
    parent_commit: if a file landed meanwhile, the push must still end with exactly the folder's files."""
    v1, _ = tiny_models
    push(v1, repo_id)
    create_commit = HfApi.create_commit
    other = {}

    def a_file_lands_first(self, *args, **kwargs):
        if not other:
            other["done"] = True
            HfApi().upload_file(path_or_fileobj=b"stray", path_in_repo="stray.bin", repo_id=repo_id)
        return create_commit(self, *args, **kwargs)

    monkeypatch.setattr(HfApi, "create_commit", a_file_lands_first)
    result = push(v1, repo_id)
    history = hub_server.commits(repo_id)
    assert history[0]["id"] == result.commit and history[1]["message"] == "Upload stray.bin with huggingface_hub"
    assert set(history[0]["files"]) == set(model_files(v1)) | {"README.md", ".gitattributes"}
