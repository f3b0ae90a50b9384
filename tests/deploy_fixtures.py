"""Helpers for the deploy tests: a git checkout of the app as a user's clone holds it, models on the test Hub.

`python -m space deploy` ships what git has committed, so the tests deploy from a fresh repository
holding this working tree's space/ and hub/ as one commit: they test the code as it is in the tree,
whatever state the developer's own checkout is in.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from app_fixtures import ROOT, random_model_folder

GIT_USER = ["-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    """Run git in `repo`; its stdout."""
    done = subprocess.run(["git", *GIT_USER, "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_checkout(dest: Path) -> Path:
    """A git repository with this working tree's space/, hub/ and .gitignore committed (what a clone has)."""
    dest.mkdir(parents=True)
    for package in ("space", "hub"):
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / ".gitignore", dest / ".gitignore")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "the app")
    return dest


def upload_model(repo_id: str, folder: Path, private: bool = False, tag: str = "v1",
                 examples: list[Path] = ()) -> Path:
    """`folder` (plus `examples` under examples/) as one commit of a new model repo, tagged `tag`."""
    from huggingface_hub import HfApi

    if examples:
        (folder / "examples").mkdir(exist_ok=True)
        for path in examples:
            shutil.copy(path, folder / "examples" / path.name)
    api = HfApi()
    api.create_repo(repo_id, private=private)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="model")
    api.create_tag(repo_id, tag=tag, revision=info.oid)
    return folder


def model_repo(repo_id: str, tmp: Path, private: bool = False, examples: list[Path] = (), size: int = 64) -> str:
    """A random-weight model (config.json + safetensors) pushed to `repo_id` at tag v1; returns the repo id."""
    upload_model(repo_id, random_model_folder(tmp / repo_id.replace("/", "--"), size=size), private, "v1", examples)
    return repo_id
